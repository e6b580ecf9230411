# SLS project and logstore for the functions' logs (s.yaml logConfig: project/logstore),
# instead of fc3's `logConfig: auto`, so that their retention, encryption and index are
# decided here and the function role's log permission names one logstore.

resource "alicloud_log_project" "functions" {
  project_name = local.log_project
  description  = "qcflow: logs of the push, harvest and callback functions."
  tags         = local.tags
}

resource "alicloud_log_store" "functions" {
  project_name     = alicloud_log_project.functions.project_name
  logstore_name    = var.logstore
  retention_period = var.log_retention_days
  shard_count      = 2
  auto_split       = true
  # Required with auto_split: a ceiling for automatic shard splits.
  max_split_shard_count = 16
  append_meta           = true

  # Logs carry ContactIds, object keys and task ids (never secrets: qcflow masks them), so
  # they are encrypted at rest with SLS's own key.
  encrypt_conf {
    enable       = true
    encrypt_type = "default"
  }
}

# qcflow writes one JSON object per log line (python-json-logger): a full-text index makes
# them searchable by request id, ContactId, task id or event name in the console.
resource "alicloud_log_store_index" "functions" {
  project  = alicloud_log_project.functions.project_name
  logstore = alicloud_log_store.functions.logstore_name

  full_text {
    case_sensitive  = false
    include_chinese = true
    token           = ", '\";=()[]{}?@&<>/:\n\t\r"
  }
}
