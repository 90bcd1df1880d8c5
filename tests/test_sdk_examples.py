"""A plugin author's first day, in CI: the example plugin's own tests pass when it is installed
(its entry point and the test kit's ``coexhub_extra_plugins`` name the same module, which must not
be registered twice), and a test run leaves no embedded redis-server behind."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "examples" / "coexhub-hello"


def isolated_env(tmp_path: Path, pythonpath: list[Path]) -> dict:
    """The embedded defaults (no shared servers), a TMPDIR of our own so its redis-server can be told
    apart, and ``pythonpath`` first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COEXHUB_", "PYTEST_"))}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {**env, "TMPDIR": str(tmp_path / "tmp"), "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join(map(str, [*pythonpath, ROOT]))}


def run_pytest(tests: Path, tmp_path: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "--basetemp", str(tmp_path / "base"), str(tests)],
                          cwd=tmp_path, env=isolated_env(tmp_path, pythonpath), capture_output=True, text=True,
                          check=False, timeout=300)


def redis_servers_under(path: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-fa", "redis-server"], capture_output=True, text=True, check=False).stdout
    return [line for line in found.splitlines() if str(path) in line]


def test_the_installed_example_passes_its_own_tests_and_leaves_nothing_running(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(HELLO)], check=True, timeout=120)
    assert (site / "coexhub_hello.py").exists()
    done = run_pytest(HELLO / "tests", tmp_path, [site])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert " passed" in done.stdout and "already registered" not in done.stdout + done.stderr
    assert redis_servers_under(tmp_path) == []
