# What `s deploy` (s.yaml) and the functions' environment need from this stack.

output "bucket" {
  description = "The store's bucket."
  value       = alicloud_oss_bucket.store.bucket
}

output "store_url" {
  description = "QCFLOW_STORE for every function."
  value       = var.store_prefix == "" ? "oss://${alicloud_oss_bucket.store.bucket}" : "oss://${alicloud_oss_bucket.store.bucket}/${var.store_prefix}"
}

output "recordings_url" {
  description = "QCFLOW_RECORDINGS_URL of the push function (the OSS trigger's bucket)."
  value       = "oss://${local.recordings_bucket}"
}

output "recordings_prefix" {
  description = "QCFLOW_RECORDING_PREFIX of the push function, and the OSS trigger's filter prefix."
  value       = var.recordings_prefix
}

output "recordings_bucket_arn" {
  description = "sourceArn of the OSS trigger in s.yaml."
  value       = "acs:oss:${var.region}:${var.account_id}:${local.recordings_bucket}"
}

output "push_role_arn" {
  description = "role of the push function in s.yaml."
  value       = alicloud_ram_role.push.arn
}

output "harvest_role_arn" {
  description = "role of the harvest function in s.yaml."
  value       = alicloud_ram_role.harvest.arn
}

output "callback_role_arn" {
  description = "role of the callback function in s.yaml."
  value       = alicloud_ram_role.callback.arn
}

output "oss_trigger_role_arn" {
  description = "invocationRole of the OSS trigger in s.yaml."
  value       = alicloud_ram_role.oss_trigger.arn
}

output "log_project" {
  description = "logConfig.project of every function in s.yaml."
  value       = alicloud_log_project.functions.project_name
}

output "logstore" {
  description = "logConfig.logstore of every function in s.yaml."
  value       = alicloud_log_store.functions.logstore_name
}

output "dlq_destination_arn" {
  description = "asyncInvokeConfig.destinationConfig.onFailure.destination of push and harvest in s.yaml."
  value       = "acs:mns:${var.region}:${var.account_id}:/queues/${alicloud_message_service_queue.dlq.queue_name}/messages"
}

output "qcflow_environment" {
  description = "The QCFLOW_* settings this stack decides, as s.yaml environmentVariables."
  value = {
    QCFLOW_STORE            = var.store_prefix == "" ? "oss://${alicloud_oss_bucket.store.bucket}" : "oss://${alicloud_oss_bucket.store.bucket}/${var.store_prefix}"
    QCFLOW_RECORDINGS_URL   = "oss://${local.recordings_bucket}"
    QCFLOW_RECORDING_PREFIX = var.recordings_prefix
    QCFLOW_REGION           = var.region
    QCFLOW_OSS_INTERNAL     = "true"
  }
}

output "pii_raw_store" {
  description = "QCFLOW_PII_RAW_STORE for the harvest and callback functions (empty: no unredacted copy)."
  value       = local.pii_raw ? (var.pii_raw_prefix == "" ? "oss://${var.pii_raw_bucket}" : "oss://${var.pii_raw_bucket}/${var.pii_raw_prefix}") : ""
}
