"""The library's callbacks do not make the host wait for the device on every step.

On CUDA, `Tensor.item`, `.cpu`, `.tolist` and `bool(tensor)` block the host until the device has run everything
queued. Here on the CPU we count those calls during a `fit` with every callback on, against the same `fit` with
none: what the callbacks add must not grow with the steps (measurements per epoch, NaN checks every 50 steps)."""
from contextlib import contextmanager
import warnings
import torch
from fastai.torch_core import set_seed
from gan_conditioning.all import *

SYNCS = ('item', 'cpu', 'tolist', '__bool__')

@contextmanager
def counting_syncs():
    "Count calls of the Tensor methods that wait for the device, inside the block."
    counts, originals = dict.fromkeys(SYNCS, 0), {n: getattr(torch.Tensor, n) for n in SYNCS}
    def counted(name, f):
        def g(self, *args, **kwargs): counts[name] += 1; return f(self, *args, **kwargs)
        return g
    for n, f in originals.items(): setattr(torch.Tensor, n, counted(n, f))
    try: yield counts
    finally:
        for n, f in originals.items(): setattr(torch.Tensor, n, f)

def _fit(cbs, epochs=2, device='cpu'):
    "Train the ring (an SN critic of 1×1 convolutions, so that SR applies); return the sync counts and the steps."
    set_seed(0)
    learn = gan_learner(gan_dls(ring_data(20_000, seed=0), nz=2, bs=100, device=device), mlp_generator(), sn_point_critic())
    with warnings.catch_warnings(), counting_syncs() as counts:
        warnings.simplefilter('ignore')
        fit_gan(learn, epochs, 2e-4, cbs=cbs)
    return counts, learn.train_iter

def test_callbacks_add_no_per_step_syncs(device):
    plain, steps = _fit([], device=device)
    cbs = [JacobianClampCallback(), ConditionNumberCallback(), PackingCallback(2), SpectralMonitorCallback(),
           SpectralRegularizationCallback('dynamic'), ring_metrics(), StopOnNaNCallback()]
    ours, steps2 = _fit(cbs, device=device)
    assert steps == steps2 > 300, (steps, steps2)
    added = {k: (ours[k] - plain[k]) / steps for k in SYNCS}
    assert sum(added.values()) < 0.2, f"per training step: fastai alone {({k: round(v / steps, 2) for k, v in plain.items()})}, added by the callbacks {added}"
    assert all(len(cb.history) > 0 for cb in cbs if isinstance(cb, MeasureCallback))   # they did measure
    assert isinstance(cbs[0].history[-1]['q_mean'], float) and isinstance(cbs[1].history[-1]['log_cond'], float)
