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


if __name__ == "__main__":
    main()
