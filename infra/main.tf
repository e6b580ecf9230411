# qcflow infrastructure that `s deploy` (Serverless Devs, fc3) does not create.
#
# `s deploy` creates the three functions, their triggers and the layer binding; it expects
# the bucket, the roles, the log store and the dead-letter queue to exist already. This
# configuration creates exactly those, so that the order of a deploy is:
#   terraform apply  ->  make layer  ->  s deploy
# (see README.md). Every name the functions rely on is an output.

terraform {
  # 1.5: strcontains() (variables.tf); resource preconditions (oss.tf) need 1.2.
  required_version = ">= 1.5"

  required_providers {
    alicloud = {
      source = "aliyun/alicloud"
      # 1.252.0 brought role_name/assume_role_policy_document to alicloud_ram_role (the older
      # name/document are deprecated); logstore_name and project_name arrived earlier (1.215).
      version = ">= 1.252.0, < 2.0.0"
    }
  }
}

provider "alicloud" {
  # Credentials come from the environment (ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET, or a profile):
  # never put them in this configuration.
  region = var.region
}

locals {
  # The store URL is oss://<bucket>/<store_prefix>; its keys live under "<store_prefix>/"
  # (or at the bucket's root when the prefix is empty).
  store_root = var.store_prefix == "" ? "" : "${var.store_prefix}/"
  # The two key prefixes qcflow writes under (qcflow.ledger / qcflow.harvest: state/…, results/…).
  store_prefixes = ["${local.store_root}state/", "${local.store_root}results/"]

  # Recordings may live in another bucket (CCC's export bucket); by default the same one.
  recordings_bucket = var.recordings_bucket != "" ? var.recordings_bucket : var.bucket

  # SLS project names are global across Alibaba Cloud: make the default unique per account and region.
  log_project = var.log_project != "" ? var.log_project : "qcflow-${var.account_id}-${var.region}"

  # The values the policy templates in ./policy/ are rendered with (tests render them the same way).
  policy_vars = {
    account_id        = var.account_id
    region            = var.region
    bucket            = var.bucket
    store_root        = local.store_root
    recordings_bucket = local.recordings_bucket
    recordings_prefix = var.recordings_prefix
    log_project       = local.log_project
    logstore          = var.logstore
    dlq_name          = var.dlq_name
    push_function     = var.push_function_name
  }

  tags = merge({ app = "qcflow" }, var.tags)
}
