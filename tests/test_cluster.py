"A study on a real dask.distributed scheduler with two worker processes gives the same runs as one trained here."
import os, warnings
import pytest

if not os.environ.get('CI'): pytest.importorskip('distributed', reason='the [cluster] extra (dask.distributed) is not installed')
from dask.distributed import LocalCluster, Client   # in CI a missing extra is a failure, not a skip
from gan_conditioning.studies import run_study

KW = dict(variants=['baseline', 'pac2'], seeds=1, steps=120, checkpoints=True, progress=False)

def test_dask_executor_matches_local_runs(tmp_path):
    here = run_study('ring', out=tmp_path / 'here', **KW)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # dask warns about ports and its dashboard on a bare machine
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
            there = run_study('ring', out=tmp_path / 'dask', executor=client.get_executor(), **KW)
            assert len(client.scheduler_info()['workers']) == 2
    assert there.runs.drop(columns='minutes').equals(here.runs.drop(columns='minutes'))
    assert there.curves.drop(columns='seconds').equals(here.curves.drop(columns='seconds'))   # all but the wall-clock
    # the checkpoints came back from the workers and were written here
    assert sorted(p.name for p in (tmp_path / 'dask/ring/runs').glob('*.pth')) == ['baseline-seed0.pth', 'pac2-seed0.pth']
    again = run_study('ring', out=tmp_path / 'dask', **KW)   # read back without any executor
    assert again.runs.drop(columns='minutes').equals(there.runs.drop(columns='minutes'))
