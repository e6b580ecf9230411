# Dead-letter destination: an MNS (Simple Message Queue) queue that Function Compute feeds
# with the event of every asynchronous invocation of push (OSS trigger) and harvest (timer)
# that still failed after its retries (s.yaml: asyncInvokeConfig.destinationConfig.onFailure).
# Push records permanent failures in its ledger itself; what lands here are invocations that
# never settled (e.g. retryable faults that outlasted maxAsyncEventAgeInSeconds), to be
# replayed by hand (`qcflow push --key …`).

resource "alicloud_message_service_queue" "dlq" {
  queue_name               = var.dlq_name
  message_retention_period = var.dlq_retention_seconds
  maximum_message_size     = 65536 # FC's destination payloads are capped at 64 KB
  visibility_timeout       = 300
  polling_wait_seconds     = 0
  delay_seconds            = 0
  tags                     = local.tags
}
