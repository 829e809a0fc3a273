"""Execute notebooks in place, as the docs show them, keeping the committed outputs of `#| slow` cells.

    python tools/run_nb.py nbs/01_models.ipynb ...           # run every cell but the slow ones
    python tools/run_nb.py --slow nbs/tutorials/pacgan.ipynb  # run the slow cells too (studies read their cached runs)

`nbdev-test --save` writes fastprogress bars as text; a Jupyter kernel, as here, records them as HTML like the
docs site renders them. Skipped slow cells keep their outputs, so a chapter can be rerun after a small edit
without retraining its studies. Then run `nbdev-clean`.
"""
import os, re, sys, warnings
from pathlib import Path
import nbformat
from nbclient import NotebookClient

_slow = re.compile(r'^\s*#\s*\|\s*slow\b', re.M)
_never = re.compile(r'^\s*#\s*\|\s*(notest\b|eval:\s*false)', re.M)   # cells the docs show but nothing runs
_jit = 'torch.jit.script'   # a deprecation warning torch prints when fastai is imported: noise in the docs

class _Client(NotebookClient):
    def __init__(self, nb, slow, **kw): super().__init__(nb, **kw); self.slow = slow
    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type == 'code' and (_never.search(cell.source) or not self.slow and _slow.search(cell.source)): return cell   # keep its outputs
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if cell.cell_type == 'code':
            cell.outputs = [o for o in cell.outputs if not (o.get('name') == 'stderr' and _jit in o.get('text', ''))]
        return cell

def run(path, slow=False, timeout=3600):
    "Execute the notebook at `path` in its own folder and write it back."
    os.environ.pop('MPLBACKEND', None)   # 'Agg' (set for tests) would stop the kernel's inline figures
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    _Client(nb, slow, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}}).execute()
    nbformat.write(nb, path)

if __name__ == '__main__':
    args = sys.argv[1:]
    slow = '--slow' in args
    for p in [a for a in args if a != '--slow']:
        print(f"running {p}{' (slow cells too)' if slow else ''}", flush=True); run(p, slow)
