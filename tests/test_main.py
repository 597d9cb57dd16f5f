"""``python -m seglosses`` is the ``seglosses`` command."""
import os
import subprocess
import sys

from seglosses.cli import main


def _run(*args):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "seglosses", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_python_m_lists_the_losses_as_the_console_script(capsys):
    assert main(["losses"]) == 0
    expected = capsys.readouterr().out
    proc = _run("losses")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected
    assert "tversky" in proc.stdout


def test_python_m_passes_the_exit_code_of_a_usage_error():
    proc = _run("no-such-command")
    assert proc.returncode == 2
    assert "usage: seglosses" in proc.stderr
