# RAM: the role the functions run as, and the role OSS uses to invoke the push function.
#
# Both policies are JSON templates under ./policy/, rendered with templatefile(): the tests
# (tests/test_infra.py) read the very same files, render them with the same variables, and
# check them against the code that needs each action. JSON holds no comments, so each
# statement of policy/qcflow-fc.json is explained here, in order (README.md has the table):
#
#  1. sca:UploadAudioData, sca:GetResult on "*"
#     qcflow.sca.ScaClient: push submits recordings (UploadAudioData) and, before re-sending a
#     recording an earlier attempt may have submitted, looks it up (GetResult by callId);
#     harvest and the callback read results (GetResult). SCA's RAM code is `sca` and it
#     authorizes at operation level only (no resource ARNs), hence "*". The product/API code
#     is Qualitycheck (endpoint qualitycheck.cn-hangzhou.aliyuncs.com); its RAM code is not.
#  2. oss:GetObject on <recordings_bucket>/<recordings_prefix>*
#     qcflow.push.Pusher.resolve: HeadObject of the uploaded recording (its ETag and the
#     ContactId metadata); HeadObject is authorized as oss:GetObject. With
#     QCFLOW_AUDIO_URL_STRATEGY=signed the function signs no URL with this role (STS URLs die
#     within the hour; a dedicated key signs them), so no other right is needed there.
#  3. oss:ListObjects on <recordings_bucket>, only for prefixes under <recordings_prefix>
#     qcflow.push.Pusher.recordings_under: backfills (`qcflow push --prefix`) list recordings.
#  4. oss:GetObject, oss:PutObject, oss:DeleteObject on <bucket>/<store_prefix>/state/*
#     qcflow.ledger (state/push/…) and qcflow.harvest.state/output (state/harvest/…): claims,
#     outcomes, leases, checkpoints, commit records are create-if-absent PutObjects
#     (x-oss-forbid-overwrite) read back with Get/HeadObject; superseded leases and
#     checkpoints, failure markers, unfinished-task markers and pending-part markers are deleted.
#  5. oss:ListObjects on <bucket>, only for prefixes under <store_prefix>/state/
#     the ledger and the harvest state list their records (ListObjectsV2 is oss:ListObjects).
#  6. oss:GetObject, oss:PutObject, oss:AbortMultipartUpload on <bucket>/<store_prefix>/results/*
#     qcflow.harvest.output writes each JSONL part once: one PutObject, or a multipart upload
#     (Initiate/UploadPart/Complete are all oss:PutObject) that is aborted on failure; a lost
#     Complete answer and crash recovery are settled with HeadObject (oss:GetObject). Results
#     are never listed nor deleted by the functions.
#  7. oss:GetBucketVersioning on <bucket>
#     qcflow.store.oss.OssStore: before its first create-if-absent the store refuses a bucket
#     whose versioning is Enabled/Suspended, and fails closed when it cannot read it.
#  8. mns:SendMessage on the dead-letter queue
#     Not called by qcflow: Function Compute sends a failed async invocation's event to the
#     on-failure destination with the function's role.
#  9. log:PostLogStoreLogs on the functions' logstore
#     Not called by qcflow: Function Compute delivers the functions' logs to the logstore of
#     their logConfig with the function's role (harmless, and scoped to one logstore, should
#     the platform use its service-linked role instead).
#
# Deliberately absent: oss:ListParts (the writer keeps its own part list), oss:* on anything
# else, any `*` action, and CCC (see the attachment of AliyunCCCReadOnlyAccess below).

resource "alicloud_ram_role" "function" {
  role_name                   = var.function_role_name
  assume_role_policy_document = file("${path.module}/policy/trust-fc.json") # trusted: fc.aliyuncs.com only
  description                 = "qcflow functions (push, harvest, callback): SCA, the store's prefixes, the recordings."
  max_session_duration        = 3600
  tags                        = local.tags
}

resource "alicloud_ram_policy" "function" {
  policy_name     = var.function_role_name
  policy_document = templatefile("${path.module}/policy/qcflow-fc.json", local.policy_vars)
  description     = "qcflow functions: exactly the actions the code calls (see infra/ram.tf and infra/README.md)."
  # Every change of the document is a new policy version; RAM keeps at most 5.
  rotate_strategy = "DeleteOldestNonDefaultVersionWhenLimitExceeded"
  tags            = local.tags
}

resource "alicloud_ram_role_policy_attachment" "function" {
  role_name   = alicloud_ram_role.function.role_name
  policy_name = alicloud_ram_policy.function.policy_name
  policy_type = "Custom"
}

# CCC GetUploadAudioDataParams has no RAM action of its own ("No authorization for this
# operation" on its API page), so no custom statement can name it; the read-only system
# policy is the narrowest grant that covers CCC's reads. Turn it off with
# attach_ccc_read_only = false if your account lets the call through without it.
resource "alicloud_ram_role_policy_attachment" "ccc_read_only" {
  count       = var.attach_ccc_read_only ? 1 : 0
  role_name   = alicloud_ram_role.function.role_name
  policy_name = "AliyunCCCReadOnlyAccess"
  policy_type = "System"
}

# The OSS trigger's invocation role: OSS assumes it to invoke the push function, and it may
# invoke nothing else (policy/qcflow-oss-trigger.json: fc:InvokeFunction on the push
# function and its versions/aliases). It replaces the account-wide default
# AliyunOSSEventNotificationRole, whose policy may invoke every function.
resource "alicloud_ram_role" "oss_trigger" {
  role_name                   = var.trigger_role_name
  assume_role_policy_document = file("${path.module}/policy/trust-oss.json") # trusted: oss.aliyuncs.com only
  description                 = "OSS trigger of qcflow: may invoke the push function only."
  max_session_duration        = 3600
  tags                        = local.tags
}

resource "alicloud_ram_policy" "oss_trigger" {
  policy_name     = var.trigger_role_name
  policy_document = templatefile("${path.module}/policy/qcflow-oss-trigger.json", local.policy_vars)
  description     = "OSS trigger of qcflow: fc:InvokeFunction on the push function only."
  rotate_strategy = "DeleteOldestNonDefaultVersionWhenLimitExceeded"
  tags            = local.tags
}

resource "alicloud_ram_role_policy_attachment" "oss_trigger" {
  role_name   = alicloud_ram_role.oss_trigger.role_name
  policy_name = alicloud_ram_policy.oss_trigger.policy_name
  policy_type = "Custom"
}
