"""The ``qcflow`` command line (optional extra ``qcflow[cli]``; not part of the FC layer)."""

from __future__ import annotations

import sys
import threading
from typing import Any

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the [cli] extra
    click = None  # type: ignore[assignment]


if click is not None:

    @click.group()
    @click.version_option(package_name="qcflow")
    @click.pass_context
    def main(ctx: click.Context) -> None:
        """qcflow: every CCC recording quality-inspected by SCA, every result in your OSS.

        Logs (JSON lines, level QCFLOW_LOG_LEVEL; per-recording lines at DEBUG) go to stderr for
        the command's lifetime; stdout carries its table, summary or --json output, once."""
        from qcflow.logs import to_stderr

        ctx.with_resource(to_stderr(_cli_log_level()))

    def _cli_log_level() -> str:
        """QCFLOW_LOG_LEVEL if it names a level (the settings check it properly), else INFO."""
        import os

        level = os.environ.get("QCFLOW_LOG_LEVEL", "INFO").strip().upper()
        return level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO"

    @main.group()
    def sandbox() -> None:
        """The local CCC + SCA emulator."""

    @sandbox.command("serve")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (keep it loopback).")
    @click.option("--port", default=8790, show_default=True, type=int, help="Port; 0 picks a free one.")
    @click.option("--access-key-id", default=None, help="Accepted AccessKey id (default: qcflow-sandbox-id).")
    @click.option(
        "--access-key-secret", default=None, help="Accepted AccessKey secret (default: qcflow-sandbox-secret)."
    )
    @click.option(
        "--task-seconds", default=2.0, show_default=True, type=float, help="Seconds from upload to a finished task."
    )
    @click.option(
        "--task-jitter-seconds", default=1.0, show_default=True, type=float, help="Random extra seconds per task."
    )
    @click.option(
        "--task-failure-rate",
        default=0.0,
        show_default=True,
        type=float,
        help="Share of tasks that end failed (status 6).",
    )
    @click.option(
        "--get-result-quota", default=1000, show_default=True, type=int, help="GetResult calls per window; 0 lifts it."
    )
    @click.option(
        "--upload-quota",
        default=3000,
        show_default=True,
        type=int,
        help="UploadAudioData calls per window; 0 lifts it.",
    )
    @click.option(
        "--ccc-quota",
        default=0,
        show_default=True,
        type=int,
        help="GetUploadAudioDataParams calls per window; 0 lifts it.",
    )
    @click.option(
        "--index-lag-seconds",
        default=0.0,
        show_default=True,
        type=float,
        help="Seconds after its upload before GetResult sees a task.",
    )
    @click.option("--quota-window-seconds", default=60.0, show_default=True, type=float, help="The quota window.")
    @click.option("--latency", default=0.0, show_default=True, type=float, help="Seconds added to every answer.")
    @click.option(
        "--latency-jitter", default=0.0, show_default=True, type=float, help="Random extra latency, up to this."
    )
    @click.option(
        "--error-rate",
        default=0.0,
        show_default=True,
        type=float,
        help="Share of answers that are 503 ServiceUnavailable.",
    )
    @click.option(
        "--throttle-rate", default=0.0, show_default=True, type=float, help="Share of answers that are Throttling.User."
    )
    @click.option(
        "--failure-rate", default=0.0, show_default=True, type=float, help="Share of answers that are Success: false."
    )
    @click.option(
        "--drop-rate",
        default=0.0,
        show_default=True,
        type=float,
        help="Share of connections dropped mid-answer, unprocessed.",
    )
    @click.option(
        "--lost-answer-rate",
        default=0.0,
        show_default=True,
        type=float,
        help="Share of requests processed whose answer is then lost.",
    )
    @click.option(
        "--lost-refusal-rate",
        default=0.0,
        show_default=True,
        type=float,
        help="Share of Success: false refusals (e.g. CallUuidRepeated) whose answer is then lost.",
    )
    @click.option("--fault-action", "fault_actions", multiple=True, help="Limit faults to this API (repeatable).")
    @click.option("--fault-seed", default=None, type=int, help="Seed for repeatable faults.")
    @click.option("--preload", default=0, show_default=True, type=int, help="Finished results to pre-load.")
    @click.option("--preload-start", default=None, help="ISO time of the first pre-loaded upload (default: a day ago).")
    @click.option("--preload-end", default=None, help="ISO time after the last pre-loaded upload (default: now).")
    @click.option(
        "--preload-reviews",
        default=0,
        show_default=True,
        type=int,
        help="Pre-loaded tasks already reviewed (saved between upload and --preload-end).",
    )
    @click.option(
        "--loose-deep-paging",
        is_flag=True,
        help="Only pages starting at record 10,000 need lastDataId (default: any page reaching past it).",
    )
    @click.option("--ali-uid", default=None, help="Account id (aliUid) in callbacks (default: 1688000000000001).")
    @click.option(
        "--callback-method",
        default="GET",
        show_default=True,
        type=click.Choice(["GET", "POST"]),
        help="HTTP method of task callbacks.",
    )
    @click.option(
        "--callback-timeout", default=3.0, show_default=True, type=float, help="Seconds one callback attempt may take."
    )
    @click.option(
        "--callback-attempts",
        default=3,
        show_default=True,
        type=int,
        help="Attempts per callback (the real policy is undocumented).",
    )
    @click.option("--callback-allow-remote", is_flag=True, help="Also call callbackUrls on non-loopback hosts.")
    @click.option(
        "--callback-forge-rate",
        default=0.0,
        show_default=True,
        type=float,
        help="Share of callbacks sent with a wrong signature.",
    )
    @click.option(
        "--callback-stale-rate",
        default=0.0,
        show_default=True,
        type=float,
        help="Share of callbacks sent with an hour-old timestamp.",
    )
    @click.option(
        "--deny-action",
        "denied_actions",
        multiple=True,
        type=click.Choice(["GetUploadAudioDataParams", "UploadAudioData", "GetResult"]),
        help="Answer this API with 403 Forbidden.RAM, as a RAM policy without it would (repeatable).",
    )
    @click.option(
        "--review-share", default=0.0, show_default=True, type=float, help="Share of finished tasks people review."
    )
    @click.option(
        "--review-delay", default=5.0, show_default=True, type=float, help="Seconds from finish to review (+ jitter)."
    )
    @click.option("--review-twice-share", default=0.0, show_default=True, type=float, help="Of those, reviewed twice.")
    @click.option(
        "--review-appeal-share",
        default=0.0,
        show_default=True,
        type=float,
        help="Of those, appealed by the agent and reviewed again.",
    )
    @click.option(
        "--review-time-unit",
        default="s",
        show_default=True,
        type=click.Choice(["s", "ms"]),
        help="Unit of ReviewTimeLong (the API page's example: seconds).",
    )
    @click.option("--stop-after", default=None, type=float, help="Stop by itself after this many seconds.")
    def serve(**opts: Any) -> None:
        """Serve GetUploadAudioDataParams, UploadAudioData and GetResult on one port."""
        from qcflow.tools.sandbox.options import (
            DEFAULT_ACCESS_KEY_ID,
            DEFAULT_ACCESS_KEY_SECRET,
            DEFAULT_ALI_UID,
            FaultOptions,
            PreloadOptions,
            QuotaOptions,
            SandboxOptions,
        )
        from qcflow.tools.sandbox.reviews import ReviewOptions
        from qcflow.tools.sandbox.server import SandboxServer
        from qcflow.triggers import parse_iso

        def quota(value: Any) -> int | None:
            return int(value) or None

        options = SandboxOptions(
            access_key_id=str(opts["access_key_id"] or DEFAULT_ACCESS_KEY_ID),
            access_key_secret=str(opts["access_key_secret"] or DEFAULT_ACCESS_KEY_SECRET),
            task_seconds=float(opts["task_seconds"]),
            task_jitter_seconds=float(opts["task_jitter_seconds"]),
            task_failure_rate=float(opts["task_failure_rate"]),
            index_lag_seconds=float(opts["index_lag_seconds"]),
            quotas=QuotaOptions(
                get_result=quota(opts["get_result_quota"]),
                upload_audio_data=quota(opts["upload_quota"]),
                get_upload_audio_data_params=quota(opts["ccc_quota"]),
                window_seconds=float(opts["quota_window_seconds"]),
            ),
            faults=FaultOptions(
                server_error_rate=float(opts["error_rate"]),
                throttle_rate=float(opts["throttle_rate"]),
                business_failure_rate=float(opts["failure_rate"]),
                drop_rate=float(opts["drop_rate"]),
                lost_answer_rate=float(opts["lost_answer_rate"]),
                lost_refusal_rate=float(opts["lost_refusal_rate"]),
                latency_seconds=float(opts["latency"]),
                latency_jitter_seconds=float(opts["latency_jitter"]),
                actions=frozenset(opts["fault_actions"]),
                seed=opts["fault_seed"],
            ),
            preload=PreloadOptions(
                count=int(opts["preload"]),
                start=parse_iso(opts["preload_start"]),
                end=parse_iso(opts["preload_end"]),
                reviews=int(opts["preload_reviews"]),
            ),
            reviews=ReviewOptions(
                share=float(opts["review_share"]),
                delay_seconds=float(opts["review_delay"]),
                jitter_seconds=float(opts["review_delay"]),
                twice_share=float(opts["review_twice_share"]),
                appeal_share=float(opts["review_appeal_share"]),
                appeal_delay_seconds=float(opts["review_delay"]),
                time_unit=opts["review_time_unit"],
            ),
            loose_deep_paging=bool(opts["loose_deep_paging"]),
            ali_uid=str(opts["ali_uid"] or DEFAULT_ALI_UID),
            callback_method=opts["callback_method"],
            callback_timeout_seconds=float(opts["callback_timeout"]),
            callback_max_attempts=max(1, int(opts["callback_attempts"])),
            callback_allow_remote=bool(opts["callback_allow_remote"]),
            callback_forge_rate=float(opts["callback_forge_rate"]),
            callback_stale_rate=float(opts["callback_stale_rate"]),
            denied_actions=frozenset(opts["denied_actions"]),
        )
        server = SandboxServer(options, host=str(opts["host"]), port=int(opts["port"]))
        click.echo(f"qcflow sandbox listening on {server.url} (access key id {options.access_key_id})", err=False)
        click.echo(
            f"  QCFLOW_CCC_ENDPOINT={server.url} QCFLOW_SCA_ENDPOINT={server.url}; "
            f"stats at {server.url}/__sandbox/stats"
        )
        sys.stdout.flush()
        if opts["stop_after"] is not None:
            timer = threading.Timer(float(opts["stop_after"]), server.stop)
            timer.daemon = True
            timer.start()
        server.serve_forever()

    from qcflow.tools.cli_ops import register

    register(main)  # push, replay, harvest, status, demo

else:  # pragma: no cover

    def main() -> None:
        sys.exit("qcflow's command line needs its extra: pip install 'qcflow[cli]'")
