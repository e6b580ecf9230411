"""Cold-start import cost of what the functions import: wall-clock time of the import statement
in fresh interpreters (warm .pyc; ``python -X importtime`` shows where it goes)."""

from __future__ import annotations

import compileall
import statistics
import subprocess
import sys
from pathlib import Path

# The layer carries no click/rich/pygments; httpx imports them for its own CLI when present,
# so they are hidden here to measure what a function pays.
LAYER = "import sys; sys.modules.update(click=None, rich=None, pygments=None); "

MODULES = {
    "qcflow.config + credentials": "import qcflow.config, qcflow.credentials",
    "qcflow.ccc + qcflow.sca (API clients)": "import qcflow.ccc, qcflow.sca",
    "qcflow.models.events": "import qcflow.models.events",
    "qcflow.store (local only)": "import qcflow.store",
    "everything push/harvest need (clients, models, store)": "import qcflow.ccc, qcflow.sca, qcflow.models.events, qcflow.store, qcflow.logs",
    "alibabacloud_oss_v2 (OSS store)": "import alibabacloud_oss_v2",
    "official CCC+SCA SDK clients (NOT in the runtime)": "import alibabacloud_ccc20200701.client, alibabacloud_qualitycheck20190115.client",
}

ROOT = Path(__file__).resolve().parents[1]
_ENV = ("import os; os.environ.update(ALIBABA_CLOUD_ACCESS_KEY_ID='AK', ALIBABA_CLOUD_ACCESS_KEY_SECRET='SK', "
        "QCFLOW_STORE='oss://qcflow-bench/qcflow'); ")
#: The push function's cold start: import its handler module and open its oss:// store (no network).
PUSH_HANDLER = (
    _ENV + f"sys.path.insert(0, {str(ROOT / 'functions' / 'push')!r}); import index; "
    "from qcflow.config import load_settings; from qcflow.store import open_store; "
    "open_store('oss://qcflow-bench/qcflow', settings=load_settings())"
)
#: The same handler written on the official SDKs: CCC + Qualitycheck clients and OSS SDK V2, built, no network.
OFFICIAL_HANDLER = (
    "from alibabacloud_ccc20200701.client import Client as Ccc; "
    "from alibabacloud_qualitycheck20190115.client import Client as Qc; "
    "from alibabacloud_tea_openapi import models as m; import alibabacloud_oss_v2 as oss; "
    "Ccc(m.Config(access_key_id='AK', access_key_secret='SK', endpoint='ccc.cn-shanghai.aliyuncs.com')); "
    "Qc(m.Config(access_key_id='AK', access_key_secret='SK', endpoint='qualitycheck.cn-hangzhou.aliyuncs.com')); "
    "cfg = oss.config.load_default(); "
    "cfg.credentials_provider = oss.credentials.StaticCredentialsProvider('AK', 'SK'); cfg.region = 'cn-shanghai'; "
    "oss.Client(cfg)"
)


def import_ms(statement: str, runs: int = 7) -> float:
    """Median wall-clock milliseconds of ``statement`` in fresh interpreters (warm .pyc)."""
    timed = f"{LAYER}import time; t = time.perf_counter(); {statement}; print((time.perf_counter() - t) * 1000)"
    subprocess.run([sys.executable, "-c", timed], check=True, capture_output=True)
    return statistics.median(
        float(subprocess.run([sys.executable, "-c", timed], check=True, capture_output=True, text=True).stdout) for _ in range(runs)
    )


def main() -> None:
    # The layer ships .pyc files; this machine sets PYTHONDONTWRITEBYTECODE, so compile first.
    package = Path(__file__).resolve().parents[1] / "shared" / "qcflow"
    compileall.compile_dir(str(package), quiet=1)
    print("== import time (median of 7 fresh processes, wall clock of the import) ==")
    for label, statement in MODULES.items():
        try:
            print(f"  {label:55s} {import_ms(statement):7.1f} ms")
        except subprocess.CalledProcessError:
            print(f"  {label:55s}     n/a")
    push = import_ms(PUSH_HANDLER)
    official = import_ms(OFFICIAL_HANDLER)
    print(f"  {'push handler cold start (import + open oss:// store)':55s} {push:7.1f} ms")
    print(f"  {'the same on the official SDKs (CCC + SCA + OSS V2)':55s} {official:7.1f} ms")
    print(f"push_cold_start_ms={push:.0f} official_sdk_cold_start_ms={official:.0f} ratio={push / official:.2f}")


if __name__ == "__main__":
    main()
