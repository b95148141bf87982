"""The README's Python example runs as written, and its set-up commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_example_runs():
    text = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["basis"].equivariant_linear == 75
    assert tuple(namespace["logits"].shape) == (8, 10)
    assert tuple(namespace["out_w"][1].shape) == (8, 16, 32, 32)
    assert tuple(namespace["cnn_weights"][0].shape) == (4, 1, 8, 1, 3, 3)
    assert tuple(namespace["accuracy"].shape) == (4, 1)
    kernels = [a for t in namespace["cnn_space"].tensors for a in t.axes[2:]]
    assert len(kernels) == 6


def test_readme_gives_two_setup_commands_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up on a fresh machine")[1].split("\n## ")[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, re.S)
    assert len(commands) == 2
    assert commands[0].endswith("dws-theory build")
    assert "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
