"README.md is generated from nbs/index.ipynb and states the install, demo and test commands."
import importlib.util, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _make_readme():
    spec = importlib.util.spec_from_file_location('make_readme', ROOT/'tools'/'make_readme.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def test_readme_is_generated_from_index():
    assert (ROOT/'README.md').read_text() == _make_readme().render_readme(), \
        "README.md is out of date with nbs/index.ipynb: run `python tools/make_readme.py`"

def test_readme_states_the_commands():
    "The install line, `gc-study`, the system package the tests need (chromium) and the test command come first, in that order."
    readme = (ROOT/'README.md').read_text()
    blocks = re.findall(r'```sh\n(.*?)```', readme, re.S)
    commands = [line.strip() for b in blocks for line in b.splitlines() if line.strip()]
    assert commands[:2] == ['pip install torch torchvision && pip install -e ".[dev]"', 'gc-study'], commands
    assert commands[2].startswith('sudo apt-get install -y chromium'), commands   # the browser test's system package
    assert commands[3] == 'nbdev-test && pytest tests', commands
    ci = (ROOT/'.ci'/'run').read_text()
    assert 'nbdev-test && pytest tests' in ci, ".ci/run must run the README's test command"
