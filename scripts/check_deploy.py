#!/usr/bin/env python3
"""Refuse an `s deploy` that would deploy a broken qcflow, before anything reaches the cloud.

s.yaml runs this as a pre-deploy action, so the checks run for a whole `s deploy` and for one
function (`s push deploy`), and never for `s info`, `s remove`, `s preview` or `s verify`: those
commands need neither the deployer's settings nor a layer build (s.yaml reads the settings with
`${env('X', '')}`, empty when unset, so that they parse without them).

Each problem is one line on stderr that says what to set or run; the exit status is 1 when
there is any. What is checked, and why here:

- ``--layer``: ``build/layer.zip`` and ``build/layer.id`` exist (a fresh checkout has no
  ``build/``): "run `make layer`". Staleness is ``build_layer.py --check``'s job.
- ``--ccc``: ``QCFLOW_CCC_INSTANCE_ID`` is set (push cannot fetch a recording without it; an
  empty value would deploy a push that fails on every event).
- ``--token``: ``QCFLOW_CALLBACK_TOKEN`` is set and long enough (>= 128 bits): push puts it in
  the callback URL it gives SCA and callback refuses calls without it, so a deploy without one
  would send (or accept) callbacks anyone can forge.
- ``--layer-arn ARN``: the layer ARN that s resolved for a function (``${resources.layer.info.arn}``,
  the latest version of this build's layer): unresolved when that layer was never published (a
  function deployed alone before the layer resource).
- ``--callback-url URL``: the callback URL that s resolved for push is an https URL. s leaves
  ``${resources.callback.info...}`` unresolved when the callback function does not exist yet
  (or has no HTTP trigger): then callback must be deployed first.

Usage (s.yaml)::

    python3 scripts/check_deploy.py --layer
    python3 scripts/check_deploy.py --ccc --token --callback-url '${resources.callback.info.url.system_url}'
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
#: What the callback accepts (qcflow.config's callback token): >= 128 bits of ``secrets.token_urlsafe``
#: (6 bits a character: 22 characters), URL-safe, since it is a path segment of the callback URL.
TOKEN = re.compile(r"[A-Za-z0-9_-]{22,256}")
GENERATE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def layer_problems(build: Path) -> list[str]:
    missing = [name for name in ("layer.zip", "layer.id") if not (build / name).is_file()]
    if missing:
        return [f"{build.name}/{missing[0]} is missing: run `make layer` (then deploy again)"]
    return []


def ccc_problems(environ: Mapping[str, str]) -> list[str]:
    if not environ.get("QCFLOW_CCC_INSTANCE_ID", "").strip():
        return ["QCFLOW_CCC_INSTANCE_ID is not set: export QCFLOW_CCC_INSTANCE_ID=<your CCC instance id>, deploy again"]
    return []


def token_problems(environ: Mapping[str, str]) -> list[str]:
    token = environ.get("QCFLOW_CALLBACK_TOKEN", "").strip()
    if not token:
        return [
            "QCFLOW_CALLBACK_TOKEN is not set: SCA's callbacks need a secret token; "
            f"export QCFLOW_CALLBACK_TOKEN=$({GENERATE_TOKEN}) and keep it for the next deploys"
        ]
    problems = []
    for name in ("QCFLOW_CALLBACK_TOKEN", "QCFLOW_CALLBACK_PREVIOUS_TOKEN"):
        value = environ.get(name, "").strip()
        if value and not TOKEN.fullmatch(value):  # never echo the value: it is a secret
            problems.append(f"{name} must be 22 to 256 URL-safe characters (>= 128 bits), e.g. {GENERATE_TOKEN}")
    return problems


def callback_url_problems(url: str) -> list[str]:
    if "${" in url or not url.strip():
        return [
            "the callback function has no HTTP trigger URL yet (not deployed): "
            "run `s callback deploy -y` (or a whole `s deploy -y`) before `s push deploy`"
        ]
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        return [f"the callback URL {url!r} is not an https URL: SCA would send its callbacks in clear"]
    return []


def layer_arn_problems(arn: str) -> list[str]:
    if "${" in arn or not arn.strip():
        return ["this build's layer is not published yet: run `s layer deploy -y` (or a whole `s deploy -y`)"]
    return []


def problems(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    found: list[str] = []
    if args.layer:
        found += layer_problems(args.build)
    if args.ccc:
        found += ccc_problems(environ)
    if args.token:
        found += token_problems(environ)
    if args.layer_arn is not None:
        found += layer_arn_problems(args.layer_arn)
    if args.callback_url is not None:
        found += callback_url_problems(args.callback_url)
    return found


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", action="store_true", help="build/layer.zip and build/layer.id exist")
    parser.add_argument("--ccc", action="store_true", help="QCFLOW_CCC_INSTANCE_ID is set")
    parser.add_argument("--token", action="store_true", help="QCFLOW_CALLBACK_TOKEN is set and long enough")
    parser.add_argument("--layer-arn", help="the layer ARN s resolved for a function: must be resolved")
    parser.add_argument("--callback-url", help="the callback URL s resolved for push: must be https")
    parser.add_argument("--build", type=Path, default=ROOT / "build", help="build folder (default: build/)")
    args = parser.parse_args(argv)
    found = problems(args, os.environ if environ is None else environ)
    for line in found:
        print(f"qcflow deploy check: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
