"What a fastai user types after building `dls` and `learn`: show_batch, show_results, export / load_learner, and fastai's TensorBoard and W&B loggers with their defaults."
import glob, os, warnings
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
import pytest, torch
from fastai.learner import load_learner
from fastai.torch_core import set_seed
from gan_conditioning.all import *

warnings.filterwarnings('ignore', message='You are shadowing an attribute')

def _ring_learner(cbs=()):
    set_seed(0)
    dls = gan_dls(ring_data(2_000), nz=2, bs=100, centers=ring_centers())
    return gan_learner(dls, mlp_generator(nz=2), mlp_critic(), cbs=list(cbs))

def _mnist_learner():
    set_seed(0)
    dls = gan_dls(load_mnist(download=False, verbose=False).images[:640], nz=16, bs=32)
    return gan_learner(dls, dcgan_generator(nz=16, width=8), dcgan_critic(width=8))

def _fit(learn, n=1, cbs=()):
    with learn.no_bar(), learn.no_logging(): learn.fit(n, 1e-3, cbs=list(cbs))

def test_show_batch_and_results_on_points():
    learn = _ring_learner()
    learn.dls.show_batch()            # fastai's convention: it draws and returns nothing
    ax = plt.gcf().axes[0]
    assert len(ax.collections[0].get_offsets()) == 100   # the whole batch in one scatter, not nine points
    assert len(ax.collections[1].get_offsets()) == 8     # the ring's centres
    plt.close('all')
    _fit(learn)
    learn.show_results()
    ax = plt.gcf().axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ['real', 'generated']
    assert len(ax.collections[0].get_offsets()) == len(ax.collections[2].get_offsets()) == 100
    plt.close('all')

def test_show_batch_and_results_on_images():
    learn = _mnist_learner()
    learn.dls.show_batch(max_n=6, nrows=2, figsize=(4, 3))
    assert sum(len(ax.images) for ax in plt.gcf().axes) == 6
    plt.close('all')
    _fit(learn)
    learn.show_results(max_n=5)
    axs = plt.gcf().axes
    assert sum(len(ax.images) for ax in axs) == 10   # five real above five generated
    img = axs[0].images[0].get_array()
    assert 0 <= img.min() and img.max() <= 1          # decoded from [-1, 1]
    plt.close('all')

def test_export_and_load_learner(tmp_path):
    "A trained learner with the library's callbacks on it round-trips; the loaded generator draws the same samples."
    learn = _ring_learner([JacobianClampCallback(), ConditionNumberCallback(), SpectralMonitorCallback()])
    _fit(learn, 2)
    learn.export(tmp_path / 'ring.pkl')
    loaded = load_learner(tmp_path / 'ring.pkl')
    z = torch.randn(64, 2)
    G, G2 = learn.model.generator.eval(), loaded.model.generator.eval()
    with torch.no_grad(): assert torch.equal(G(z), G2(z))
    assert {type(cb).__name__ for cb in loaded.cbs} >= {'JacobianClampCallback', 'ConditionNumberCallback', 'SpectralMonitorCallback'}
    assert len(loaded.dls.train.real) == 0   # exported without the data
    _fit(learn)                              # and the original learner trains on, its optimizer state restored

@pytest.mark.parametrize('which', ['quick start', 'study', 'mnist', 'conditional'])
def test_tensorboard_with_defaults(tmp_path, which):
    pytest.importorskip('tensorboard', reason="pip install -e '.[loggers]'")
    from fastai.callback.tensorboard import TensorBoardCallback
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    if which == 'study': learn, cbs = study_learner('ring', 'jc', seed=0), []
    elif which == 'mnist': learn, cbs = _mnist_learner(), [ConditionNumberCallback(n_z=8)]
    elif which == 'conditional': learn, cbs = study_learner('ring-cond', 'jc', seed=0), []
    else: learn, cbs = _ring_learner(), [JacobianClampCallback(), ConditionNumberCallback()]
    _fit(learn, 2, cbs + [TensorBoardCallback(tmp_path)])
    ea = EventAccumulator(str(tmp_path)); ea.Reload()
    scalars = set(ea.Tags()['scalars'])
    assert {'train_loss', 'log_cond'} <= scalars, scalars
    if which != 'mnist': assert 'Q' in scalars
    if which == 'study': assert {'modes', 'hq', 'sv_collapse'} <= scalars, scalars
    if which == 'conditional': assert {'label_acc', 'log_cond'} <= scalars, scalars
    assert ea.Tags()['images'] == ['Sample results'] and len(ea.Images('Sample results')) == 2   # one figure an epoch

def _wandb_records(path):
    "The records of an offline W&B run file (a LevelDB-style log of protobuf records after a 7-byte header)."
    from wandb.proto.wandb_internal_pb2 import Record
    data, out, buf, pos, block = open(path, 'rb').read(), [], b'', 7, 32768
    assert data[:4] == b':W&B', data[:8]
    while pos + 7 <= len(data):
        if block - pos % block < 7: pos += block - pos % block; continue
        n, kind = int.from_bytes(data[pos + 4:pos + 6], 'little'), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind == 1: out.append(chunk)
        elif kind == 2: buf = chunk
        elif kind == 3: buf += chunk
        elif kind == 4: out.append(buf + chunk)
    return [Record.FromString(c) for c in out]

@pytest.mark.parametrize('which', ['quick start', 'study', 'conditional'])
def test_wandb_offline_with_defaults(tmp_path, monkeypatch, which):
    wandb = pytest.importorskip('wandb', reason="pip install -e '.[loggers]'")
    from fastai.callback.wandb import WandbCallback
    monkeypatch.setenv('WANDB_MODE', 'offline'); monkeypatch.setenv('WANDB_DIR', str(tmp_path)); monkeypatch.setenv('WANDB_SILENT', 'true')
    learn, cbs = ((study_learner('ring' if which == 'study' else 'ring-cond', 'jc', seed=0), []) if which != 'quick start'
                  else (_ring_learner(), [JacobianClampCallback(), ConditionNumberCallback()]))
    run = wandb.init(project='gan-conditioning-test', dir=str(tmp_path), mode='offline')   # the env is read once a process
    try: _fit(learn, 1, cbs + [WandbCallback()])
    finally: run.finish()
    runs = glob.glob(str(tmp_path / 'wandb/offline-run-*'))
    assert len(runs) == 1
    recs = _wandb_records(glob.glob(f'{runs[0]}/run-*.wandb')[0])
    keys = {i.key or '/'.join(i.nested_key) for r in recs if r.WhichOneof('record_type') == 'history' for i in r.history.item}
    assert {'train_loss', 'log_cond', 'Q', 'Prediction Samples/path'} <= keys, keys
    if which != 'quick start': assert {'modes', 'hq', 'sv_collapse'} <= keys
    if which == 'conditional': assert 'label_acc' in keys
    assert glob.glob(f'{runs[0]}/files/media/images/Prediction Samples_*.png')
