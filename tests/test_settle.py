"""Long-running processes settle before they serve (``Runtime.settle``): every plugin loaded and
the start-up heap frozen, so the garbage collector's full passes no longer walk it. Each check
runs in a process of its own, as ``gc.freeze`` is process-wide."""
import json
import subprocess
import sys

from hub.testing import process_env

REPORT = ("import gc, json\n"
          "print(json.dumps({'frozen': gc.get_freeze_count(), 'plugins': sorted(rt.plugins.connectors)}))")


def settled(coexhub_runtime, code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}"], env=process_env(coexhub_runtime),
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_production_web_app_is_settled_once_imported(coexhub_runtime):
    report = settled(coexhub_runtime, "import gc\nassert gc.get_freeze_count() == 0\n"
                                      "from hub.asgi import app\nrt = app.rt")
    assert report["frozen"] > 10_000  # the code and libraries loaded at start, not a handful of objects
    assert {"shopify", "woocommerce", "stripe"} <= set(report["plugins"])


def test_a_worker_is_settled_before_its_first_job(coexhub_runtime):
    report = settled(coexhub_runtime, "from hub.core import runtime, workers\nimport sys\n"
                                      "rt = runtime.current()\n"
                                      "assert 'hub.core.processing' not in sys.modules\n"
                                      "workers.prepare(rt, fork=False)\n"
                                      "assert 'hub.core.processing' in sys.modules")
    assert report["frozen"] > 10_000
    assert {"shopify", "woocommerce", "stripe"} <= set(report["plugins"])
