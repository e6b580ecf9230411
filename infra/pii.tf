# The unredacted copy of the harvested rows (QCFLOW_PII_RAW_STORE, issue 24): off unless
# var.pii_raw_bucket is set. The store's rows are redacted (QCFLOW_PII); this bucket receives
# the same rows unredacted through the same exactly-once writer, so it is a bucket of its own:
# analysts granted the store never see it. Only the harvest and callback roles may write it
# (policy/pii-raw-store.json), each nothing else there.

locals {
  pii_raw       = var.pii_raw_bucket != ""
  pii_raw_root  = var.pii_raw_prefix == "" ? "" : "${var.pii_raw_prefix}/"
  pii_raw_roles = local.pii_raw ? toset(["harvest", "callback"]) : toset([])
}

resource "alicloud_oss_bucket" "pii_raw" {
  #checkov:skip=CKV_ALI_10:Versioning must stay off, as on the store bucket: the writer's commit records are PutObject with x-oss-forbid-overwrite, which OSS ignores once versioning was enabled.
  #checkov:skip=CKV_ALI_6:Encrypted at rest with OSS-managed keys (SSE-OSS, AES256) below; a customer master key is the operator's choice.
  #checkov:skip=CKV_ALI_11:Transfer acceleration is not a security control; the functions use the internal endpoint.
  count         = local.pii_raw ? 1 : 0
  bucket        = var.pii_raw_bucket
  storage_class = "Standard"
  force_destroy = false

  server_side_encryption_rule {
    sse_algorithm = "AES256"
  }

  logging {
    target_bucket = var.pii_raw_bucket
    target_prefix = var.access_log_prefix
  }

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
      condition     = var.pii_raw_bucket != var.bucket && var.pii_raw_bucket != local.recordings_bucket
      error_message = "pii_raw_bucket must be a bucket of its own (not the store's nor the recordings' bucket)."
    }
  }
}

resource "alicloud_oss_bucket_acl" "pii_raw" {
  count  = local.pii_raw ? 1 : 0
  bucket = alicloud_oss_bucket.pii_raw[0].bucket
  acl    = "private"
}

resource "alicloud_oss_bucket_public_access_block" "pii_raw" {
  count               = local.pii_raw ? 1 : 0
  bucket              = alicloud_oss_bucket.pii_raw[0].bucket
  block_public_access = true
}

# One policy, attached to the harvest and callback roles: the writer's records and markers
# under state/ (commits, pending; pending markers deleted once a part is visible or
# recovered), the parts under results/ and reviews/, the listing of state/ (commit logs,
# recovery), and GetBucketVersioning (the store refuses a versioned bucket).
resource "alicloud_ram_policy" "pii_raw" {
  count       = local.pii_raw ? 1 : 0
  policy_name = "qcflow-pii-raw-store"
  policy_document = templatefile("${path.module}/policy/pii-raw-store.json", {
    account_id = var.account_id
    raw_bucket = var.pii_raw_bucket
    raw_root   = local.pii_raw_root
  })
  description     = "qcflow harvest and callback: write the unredacted copy of the rows (QCFLOW_PII_RAW_STORE), nothing else there."
  rotate_strategy = "DeleteOldestNonDefaultVersionWhenLimitExceeded"
  tags            = local.tags
}

resource "alicloud_ram_role_policy_attachment" "pii_raw" {
  for_each    = local.pii_raw_roles
  role_name   = local.function_roles[each.key]
  policy_name = alicloud_ram_policy.pii_raw[0].policy_name
  policy_type = "Custom"
}
