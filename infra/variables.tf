# Inputs. Only account_id and bucket have no default; the rest match s.yaml's defaults.

variable "account_id" {
  description = "Alibaba Cloud account id (the owner of the bucket, the queue and the log project): every ARN in the policies is built from it."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{6,20}$", var.account_id))
    error_message = "account_id must be the numeric Alibaba Cloud account id."
  }
}

variable "region" {
  description = "Region of the bucket, the functions, the log project and the queue (SCA itself is reached in cn-hangzhou whatever this is)."
  type        = string
  default     = "cn-shanghai"
}

variable "bucket" {
  description = "Bucket holding the qcflow store (state/ and results/), created here with versioning off."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket))
    error_message = "bucket must be 3-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
  }
}

variable "store_prefix" {
  description = "Key prefix of the store inside the bucket: QCFLOW_STORE=oss://<bucket>/<store_prefix>. Empty puts state/ and results/ at the bucket's root."
  type        = string
  default     = "qcflow"

  validation {
    condition     = var.store_prefix == "" || can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.store_prefix))
    error_message = "store_prefix must be empty or a key prefix without leading or trailing slash (e.g. qcflow)."
  }
}

variable "recordings_bucket" {
  description = "Bucket the CCC recordings land in (the OSS trigger's bucket). Empty means the same bucket as the store. Not created here when it differs."
  type        = string
  default     = ""
}

variable "recordings_prefix" {
  description = "Key prefix of the recordings in their bucket (QCFLOW_RECORDING_PREFIX, the OSS trigger's filter prefix). The function role may read only below it."
  type        = string
  default     = "ccc/"

  validation {
    condition     = !startswith(var.recordings_prefix, "/") && !strcontains(var.recordings_prefix, "*")
    error_message = "recordings_prefix must not start with a slash nor contain a wildcard."
  }
}

variable "multipart_abort_days" {
  description = "Days after which the bucket's lifecycle rule aborts an incomplete multipart upload (a harvest writer that crashed mid-part)."
  type        = number
  default     = 1

  validation {
    condition     = var.multipart_abort_days >= 1
    error_message = "multipart_abort_days must be at least 1."
  }
}

variable "access_log_prefix" {
  description = "Prefix (in the same bucket) of OSS access logs: who read which recording. Outside the recordings and store prefixes."
  type        = string
  default     = "oss-access-log/"
}

variable "access_log_retention_days" {
  description = "Days OSS access logs are kept before the lifecycle rule deletes them."
  type        = number
  default     = 180
}

variable "push_role_name" {
  description = "RAM role the push function runs as (s.yaml: vars.pushRole): CCC, SCA UploadAudioData/GetResult, the recordings (read), the push ledger."
  type        = string
  default     = "qcflow-fc-push"
}

variable "harvest_role_name" {
  description = "RAM role the harvest function runs as (s.yaml: vars.harvestRole): SCA GetResult, the store's state/ and results/."
  type        = string
  default     = "qcflow-fc-harvest"
}

variable "callback_role_name" {
  description = "RAM role the internet-facing callback function runs as (s.yaml: vars.callbackRole): SCA GetResult and the exactly-once writer's paths only."
  type        = string
  default     = "qcflow-fc-callback"
}

variable "trigger_role_name" {
  description = "RAM role OSS assumes to invoke the push function (s.yaml: the OSS trigger's invocationRole)."
  type        = string
  default     = "qcflow-oss-trigger"
}

variable "push_function_name" {
  description = "Name of the push function (s.yaml functionName): the only function the OSS trigger's role may invoke."
  type        = string
  default     = "qcflow-push"
}

variable "attach_ccc_read_only" {
  description = "Attach the system policy AliyunCCCReadonlyAccess to the push function's role (only push calls CCC). CCC publishes no RAM action for GetUploadAudioDataParams, so no narrower grant can be written."
  type        = bool
  default     = true
}

variable "log_project" {
  description = "SLS project for the functions' logs (names are global: empty means qcflow-<account_id>-<region>)."
  type        = string
  default     = ""
}

variable "logstore" {
  description = "SLS logstore for the functions' logs (s.yaml: logConfig.logstore)."
  type        = string
  default     = "qcflow-fc"
}

variable "log_retention_days" {
  description = "Days the functions' logs are kept."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 1 && var.log_retention_days <= 3650
    error_message = "log_retention_days must be between 1 and 3650."
  }
}

variable "dlq_name" {
  description = "MNS queue receiving the events whose async invocations (push, harvest) failed after every retry."
  type        = string
  default     = "qcflow-dlq"
}

variable "dlq_retention_seconds" {
  description = "How long a dead letter stays in the queue (MNS allows at most 7 days)."
  type        = number
  default     = 604800

  validation {
    condition     = var.dlq_retention_seconds >= 60 && var.dlq_retention_seconds <= 604800
    error_message = "dlq_retention_seconds must be between 60 and 604800 (7 days)."
  }
}

variable "tags" {
  description = "Extra tags for every resource that takes tags (app = qcflow is always set)."
  type        = map(string)
  default     = {}
}

variable "kms_secrets" {
  description = "KMS Secrets Manager secrets each function reads its settings from (QCFLOW_<SETTING>_KMS_NAME), by function: e.g. { push = [\"qcflow/audio-url-key\"] }. Each function's role may read exactly these (kms:GetSecretValue)."
  type        = map(list(string))
  default     = {}

  validation {
    condition     = alltrue([for function in keys(var.kms_secrets) : contains(["push", "harvest", "callback"], function)])
    error_message = "kms_secrets keys must be push, harvest or callback."
  }
  validation {
    condition     = alltrue([for names in values(var.kms_secrets) : alltrue([for name in names : can(regex("^[A-Za-z0-9_/+=.@-]{1,192}$", name))])])
    error_message = "kms_secrets: secret names are 1-192 of letters, digits and _/+=.@-."
  }
}

variable "pii_raw_bucket" {
  description = "Bucket of the unredacted copy of the harvested rows (QCFLOW_PII_RAW_STORE, issue 24), created here with the store bucket's protections; only the harvest and callback roles may write it. Empty (the default): no unredacted copy, nothing created."
  type        = string
  default     = ""

  validation {
    condition     = var.pii_raw_bucket == "" || can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.pii_raw_bucket))
    error_message = "pii_raw_bucket must be empty or 3-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit."
  }
}

variable "pii_raw_prefix" {
  description = "Key prefix of the unredacted copy inside pii_raw_bucket: QCFLOW_PII_RAW_STORE=oss://<pii_raw_bucket>/<pii_raw_prefix>. Empty puts its state/, results/ and reviews/ at the bucket's root."
  type        = string
  default     = "qcflow-raw"

  validation {
    condition     = var.pii_raw_prefix == "" || can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.pii_raw_prefix))
    error_message = "pii_raw_prefix must be empty or a key prefix without leading or trailing slash (e.g. qcflow-raw)."
  }
}
