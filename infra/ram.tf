# RAM: one role per function, and the role OSS uses to invoke the push function.
#
# Each function runs as a role of its own, holding exactly what that function's code calls:
# the internet-facing callback cannot submit recordings (sca:UploadAudioData is billable),
# read them (personal data), read CCC, or delete the harvest's checkpoints, leases, commit
# records or the push ledger. The policies are JSON templates under ./policy/, rendered with
# templatefile(): the tests (tests/test_infra.py, tests/test_roles.py) read the very same
# files, render them with the same variables, check them against the code and run each
# function's real handler against the sandbox, every store and API call checked against
# that function's policy. JSON holds no comments, so each statement is explained here, per
# policy and in order (README.md has the tables). "State" is <bucket>/<store_prefix>/state/.
#
# policy/qcflow-push.json (the push function: OSS trigger -> CCC -> SCA UploadAudioData)
#  1. sca:UploadAudioData, sca:GetResult on "*"
#     qcflow.sca.ScaClient: push submits recordings (UploadAudioData) and, before re-sending a
#     recording an earlier attempt may have submitted, looks it up (GetResult by callId).
#     SCA's RAM code is `sca` and it authorizes at operation level only, hence "*".
#  2. oss:GetObject on <recordings_bucket>/<recordings_prefix>*
#     qcflow.push.Pusher.resolve: HeadObject of the uploaded recording (its ETag and the
#     ContactId metadata); HeadObject is authorized as oss:GetObject. Listing recordings is a
#     backfill (`qcflow push --prefix`), run by an operator with their own credentials.
#  3. oss:GetObject, oss:PutObject on state/push/*
#     qcflow.ledger: claims, outcomes, markers are create-if-absent PutObjects
#     (x-oss-forbid-overwrite) read back with Get/HeadObject.
#  4. oss:DeleteObject on state/push/open/*
#     qcflow.ledger: the open-generation marker is dropped once its push settles; nothing
#     else of the ledger is ever deleted by the function.
#  5. oss:ListObjects on <bucket>, only for prefixes under state/push/
#     the ledger lists a recording's generations (ListObjectsV2 is oss:ListObjects).
#  6. oss:GetBucketVersioning on <bucket>
#     qcflow.store.oss.OssStore: before its first create-if-absent the store refuses a bucket
#     whose versioning is Enabled/Suspended, and fails closed when it cannot read it.
#  7. mns:SendMessage on the dead-letter queue
#     Not called by qcflow: Function Compute sends a failed async invocation's event to the
#     on-failure destination with the function's role.
#  8. log:PostLogStoreLogs on the functions' logstore
#     Not called by qcflow: Function Compute delivers the function's logs to the logstore of
#     its logConfig with the function's role (harmless, and scoped to one logstore, should
#     the platform use its service-linked role instead).
#  Plus the system policy AliyunCCCReadonlyAccess (below): push alone calls CCC.
#
# policy/qcflow-harvest.json (the harvest function: timer -> GetResult pages -> results/)
#  1. sca:GetResult on "*"
#     qcflow.harvest reads results page by page; never uploads.
#  2. oss:GetObject, oss:PutObject on state/*
#     qcflow.harvest.state/output (state/harvest/...: lease, checkpoint, commits, pending,
#     manifests, unfinished) and qcflow.ledger (state/push/records/<rid>/task-id.json: a
#     taskId learnt for a submission whose answer was lost).
#  3. oss:DeleteObject on state/push/unknown-task/*, state/harvest/{lease,backfill-lease,
#     checkpoint,pending,unfinished}/*, state/reviews/{checkpoint,pending}/*, results/*, reviews/*
#     compaction (qcflow.harvest.compact) deletes the parts of a closed hour it folded, only after
#     their replacement is committed, and its hidden _compact/ copies once published;
#     superseded leases and checkpoints are pruned, pending-part and unfinished-result
#     markers retired, unknown-task markers retired once their taskId is known. Commit
#     records, manifests and the ledger's records are never deleted.
#  4. oss:ListObjects on <bucket>, only for prefixes under state/, results/ and reviews/
#     the harvest state and the ledger's unknown-task markers are listed; compaction lists the
#     parts of the hours it folds.
#  5. oss:GetObject, oss:PutObject, oss:AbortMultipartUpload on <bucket>/<store_prefix>/results/*
#     and reviews/* (the review feed's rows)
#     qcflow.harvest.output writes each JSONL part once: one PutObject, or a multipart upload
#     (Initiate/UploadPart/Complete are all oss:PutObject) that is aborted on failure; a lost
#     Complete answer and crash recovery are settled with HeadObject (oss:GetObject). Results
#     are never listed nor deleted by the functions.
#  6. oss:GetBucketVersioning on <bucket>
#     as push's 6.
#  7. mns:SendMessage on the dead-letter queue
#     as push's 7 (harvest's async invocations have the same on-failure destination).
#  8. log:PostLogStoreLogs on the functions' logstore
#     as push's 8.
#
# policy/qcflow-callback.json (the callback function: anonymous HTTP -> one GetResult -> results/)
#  1. sca:GetResult on "*"
#     the callback fetches the one task it was told about; it can submit nothing.
#  2. oss:GetObject, oss:PutObject on state/*
#     the exactly-once writer's commit records, pending markers and manifests
#     (state/harvest/...) and task-id.json notes in the ledger, as harvest's 2.
#  3. oss:DeleteObject on state/push/unknown-task/*, state/harvest/{pending,unfinished}/*,
#     state/reviews/pending/*
#     the markers its path retires; no lease, checkpoint, commit record or ledger record.
#  4. oss:ListObjects on <bucket>, only for prefixes under state/
#     commit records of a partition and the unknown-task markers are listed.
#  5. oss:GetObject, oss:PutObject, oss:AbortMultipartUpload on <bucket>/<store_prefix>/results/*
#     and reviews/* (a task already reviewed when its callback comes)
#     as harvest's 5: the callback writes through the same exactly-once writer.
#  6. oss:GetBucketVersioning on <bucket>
#     as push's 6.
#  7. log:PostLogStoreLogs on the functions' logstore
#     as push's 8. No mns:SendMessage: the HTTP trigger is synchronous, there is no
#     on-failure destination.
#
# Deliberately absent everywhere: any `*` action, oss:* on anything else, oss:ListParts (the
# writer keeps its own part list), listing or deleting results, writing recordings, KMS for
# the bucket (it uses SSE-OSS). The callback role has no UploadAudioData, no recordings and
# no CCC; neither push nor the callback may touch what the other's code does not.

resource "alicloud_ram_role" "push" {
  role_name                   = var.push_role_name
  assume_role_policy_document = file("${path.module}/policy/trust-fc.json") # trusted: fc.aliyuncs.com only
  description                 = "qcflow push function: CCC, SCA UploadAudioData/GetResult, the recordings (read), the push ledger."
  max_session_duration        = 3600
  tags                        = local.tags
}

resource "alicloud_ram_policy" "push" {
  policy_name     = var.push_role_name
  policy_document = templatefile("${path.module}/policy/qcflow-push.json", local.policy_vars)
  description     = "qcflow push: exactly the actions its code calls (see infra/ram.tf and infra/README.md)."
  # Every change of the document is a new policy version; RAM keeps at most 5.
  rotate_strategy = "DeleteOldestNonDefaultVersionWhenLimitExceeded"
  tags            = local.tags
}

resource "alicloud_ram_role_policy_attachment" "push" {
  role_name   = alicloud_ram_role.push.role_name
  policy_name = alicloud_ram_policy.push.policy_name
  policy_type = "Custom"
}

# CCC GetUploadAudioDataParams has no RAM action of its own ("No authorization for this
# operation" on its API page), so no custom statement can name it; CCC's read-only system
# policy is the narrowest grant that covers CCC's reads, and only push calls CCC. Its name is
# RAM's own spelling, AliyunCCCReadonlyAccess (lower-case "o"): the provider compares the
# attached policy's name exactly when it reads the attachment back. Turn it off with
# attach_ccc_read_only = false if your account lets the call through without it.
resource "alicloud_ram_role_policy_attachment" "ccc_read_only" {
  count       = var.attach_ccc_read_only ? 1 : 0
  role_name   = alicloud_ram_role.push.role_name
  policy_name = "AliyunCCCReadonlyAccess"
  policy_type = "System"
}

resource "alicloud_ram_role" "harvest" {
  role_name                   = var.harvest_role_name
  assume_role_policy_document = file("${path.module}/policy/trust-fc.json") # trusted: fc.aliyuncs.com only
  description                 = "qcflow harvest function: SCA GetResult, the store's state/ and results/."
  max_session_duration        = 3600
  tags                        = local.tags
}

resource "alicloud_ram_policy" "harvest" {
  policy_name     = var.harvest_role_name
  policy_document = templatefile("${path.module}/policy/qcflow-harvest.json", local.policy_vars)
  description     = "qcflow harvest: exactly the actions its code calls (see infra/ram.tf and infra/README.md)."
  rotate_strategy = "DeleteOldestNonDefaultVersionWhenLimitExceeded"
  tags            = local.tags
}

resource "alicloud_ram_role_policy_attachment" "harvest" {
  role_name   = alicloud_ram_role.harvest.role_name
  policy_name = alicloud_ram_policy.harvest.policy_name
  policy_type = "Custom"
}

resource "alicloud_ram_role" "callback" {
  role_name                   = var.callback_role_name
  assume_role_policy_document = file("${path.module}/policy/trust-fc.json") # trusted: fc.aliyuncs.com only
  description                 = "qcflow callback function (internet-facing): SCA GetResult, the store's writer paths only."
  max_session_duration        = 3600
  tags                        = local.tags
}

resource "alicloud_ram_policy" "callback" {
  policy_name     = var.callback_role_name
  policy_document = templatefile("${path.module}/policy/qcflow-callback.json", local.policy_vars)
  description     = "qcflow callback: exactly the actions its code calls (see infra/ram.tf and infra/README.md)."
  rotate_strategy = "DeleteOldestNonDefaultVersionWhenLimitExceeded"
  tags            = local.tags
}

resource "alicloud_ram_role_policy_attachment" "callback" {
  role_name   = alicloud_ram_role.callback.role_name
  policy_name = alicloud_ram_policy.callback.policy_name
  policy_type = "Custom"
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

# KMS Secrets Manager: a function that reads a setting from KMS (QCFLOW_<SETTING>_KMS_NAME,
# qcflow.secrets) may read exactly those secrets: kms:GetSecretValue on each secret's ARN,
# one policy per function that has any (var.kms_secrets; none by default). A secret created
# with a customer-managed key also needs kms:Decrypt on that key (not granted here).
locals {
  function_roles = {
    push     = alicloud_ram_role.push.role_name
    harvest  = alicloud_ram_role.harvest.role_name
    callback = alicloud_ram_role.callback.role_name
  }
  function_role_names = {
    push     = var.push_role_name
    harvest  = var.harvest_role_name
    callback = var.callback_role_name
  }
  kms_secrets = { for function, names in var.kms_secrets : function => names if length(names) > 0 }
}

resource "alicloud_ram_policy" "secrets" {
  for_each    = local.kms_secrets
  policy_name = "${local.function_role_names[each.key]}-secrets"
  policy_document = templatefile("${path.module}/policy/kms-secrets.json", {
    secret_arns = jsonencode([for name in each.value : "acs:kms:${var.region}:${var.account_id}:secret/${name}"])
  })
  description     = "qcflow ${each.key}: kms:GetSecretValue on the secrets its settings name, nothing else."
  rotate_strategy = "DeleteOldestNonDefaultVersionWhenLimitExceeded"
  tags            = local.tags
}

resource "alicloud_ram_role_policy_attachment" "secrets" {
  for_each    = alicloud_ram_policy.secrets
  role_name   = local.function_roles[each.key]
  policy_name = each.value.policy_name
  policy_type = "Custom"
}
