"The studies behind the docs live in the repository (issue 25): a tutorial re-executed from the committed run files, training nothing, prints the table it shows."
import copy, re
from pathlib import Path
from fastcore.nbio import read_nb
from fastcore.xtras import working_directory
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parents[1]
_SLOW = re.compile(r'^\s*#\s*\|\s*(slow|notest|eval:\s*false)\b', re.M)

def _plain(outputs):
    "The text a cell showed: its printed text and the plain-text form of its value."
    out = []
    for o in outputs:
        if o.get('output_type') == 'stream' and o.get('name') == 'stdout': out.append(''.join(o['text']))
        elif 'data' in o and 'text/plain' in o['data']: out.append(''.join(o['data']['text/plain']))
    return '\n'.join(out).strip()

def _rerun_until(path, marker):
    "Execute the notebook's non-slow cells up to the first code cell containing `marker`; return its committed and new text."
    nb = read_nb(path)
    cells = [c for c in nb.cells if c.cell_type == 'code']
    target = next(c for c in cells if marker in c.source)
    committed = _plain(copy.deepcopy(target.outputs))
    after = {id(c) for c in cells[cells.index(target) + 1:]}
    shell = CaptureShell(path)
    shell.run("import pandas as pd; pd.set_option('display.max_columns', 20); pd.set_option('display.width', 80)")   # a kernel's text form, not a terminal's
    with working_directory(path.parent):
        shell.run_all(nb, exc_stop=True, preproc=lambda c: c.cell_type != 'code' or id(c) in after or bool(_SLOW.search(c.source)))
    return committed, _plain(target.outputs)

def test_pacgan_ring_table_from_the_committed_runs():
    committed, now = _rerun_until(ROOT/'nbs'/'tutorials'/'pacgan.ipynb', "ring64.compare(")
    assert committed and 'precision' in committed, "the tutorial's committed table is missing: run tools/run_nb.py on it"
    assert now == committed
