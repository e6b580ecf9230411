# The bucket of the qcflow store (and, by default, of the recordings).

resource "alicloud_oss_bucket" "store" {
  #checkov:skip=CKV_ALI_10:Versioning must stay off. The store's create-if-absent (ledger claims, leases, checkpoints) is PutObject with x-oss-forbid-overwrite, which OSS ignores on a bucket whose versioning is Enabled or Suspended; the store reads GetBucketVersioning and refuses such a bucket. Lost objects are guarded by the ledger's immutable, sequence-numbered records instead.
  #checkov:skip=CKV_ALI_6:Encrypted at rest with OSS-managed keys (SSE-OSS, AES256) below. A customer master key (SSE-KMS) would need kms:GenerateDataKey/kms:Decrypt for every writer and reader, including CCC's recording export and the pre-signed URLs SCA fetches; that is a choice for the operator, not a default.
  #checkov:skip=CKV_ALI_11:Transfer acceleration speeds up uploads from far away and costs extra; the functions use the region's internal endpoint (QCFLOW_OSS_INTERNAL) and CCC writes from the same region. It is not a security control.
  bucket        = var.bucket
  storage_class = "Standard"
  force_destroy = false # results and the ledger are the product: never delete them with the stack

  # No `versioning` block: versioning is never enabled on this bucket (see CKV_ALI_10 above).
  # The provider's versioning block accepts only Enabled or Suspended, and Suspended is not "off".

  server_side_encryption_rule {
    sse_algorithm = "AES256"
  }

  # OSS access logs (who read or wrote which recording or result), kept in the same bucket
  # under their own prefix, outside the recordings and the store.
  logging {
    target_bucket = var.bucket
    target_prefix = var.access_log_prefix
  }

  # A harvest writer uploads large result parts as multipart uploads and aborts them on any
  # failure; a crashed instance cannot, and its parts would be billed forever. This rule
  # aborts whatever upload is still incomplete after `multipart_abort_days`.
  lifecycle_rule {
    id      = "abort-incomplete-multipart-uploads"
    enabled = true

    abort_multipart_upload {
      days = var.multipart_abort_days
    }
  }

  lifecycle_rule {
    id      = "expire-access-logs"
    prefix  = var.access_log_prefix
    enabled = true

    expiration {
      days = var.access_log_retention_days
    }
  }

  tags = local.tags

  lifecycle {
    precondition {
      # The design keeps state and results out of the recordings' prefix, so the OSS trigger
      # and backfills never see qcflow's own objects (nor the access logs).
      condition = local.recordings_bucket != var.bucket || (
        var.recordings_prefix != "" && alltrue([
          for p in concat(local.store_prefixes, [var.access_log_prefix]) :
          !startswith(p, var.recordings_prefix) && !startswith(var.recordings_prefix, p)
        ])
      )
      error_message = "In a shared bucket, recordings_prefix must be non-empty and must neither contain nor lie inside the store's state/ and results/ prefixes or access_log_prefix."
    }
    precondition {
      condition = var.access_log_prefix != "" && alltrue([
        for p in local.store_prefixes :
        !startswith(p, var.access_log_prefix) && !startswith(var.access_log_prefix, p)
      ])
      error_message = "access_log_prefix must be non-empty and outside the store's state/ and results/ prefixes."
    }
  }
}

# Private, and public access blocked: recordings are personal data. SCA fetches audio through
# pre-signed URLs, which are signed requests and keep working.
resource "alicloud_oss_bucket_acl" "store" {
  bucket = alicloud_oss_bucket.store.bucket
  acl    = "private"
}

resource "alicloud_oss_bucket_public_access_block" "store" {
  bucket              = alicloud_oss_bucket.store.bucket
  block_public_access = true
}
