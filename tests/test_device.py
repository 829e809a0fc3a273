"""Every callback and numerical routine on the device of `$GC_TEST_DEVICE` (the CPU here; `tools/gpu_check.sh`
runs these on CUDA): the measurements come back as Python numbers and CPU tensors, and agree with the CPU."""
import math, warnings
import torch
from fastai.torch_core import set_seed
from gan_conditioning.all import *

def test_every_callback_trains_on_the_device(device):
    set_seed(0)
    learn = gan_learner(gan_dls(ring_data(4_000, seed=0), nz=2, bs=100, device=device), mlp_generator(), sn_point_critic())
    cbs = [JacobianClampCallback(check_every=7), ConditionNumberCallback(n_z=16), PackingCallback(2), SpectralMonitorCallback(every=10),
           SpectralRegularizationCallback('dynamic', every=2), ring_metrics(n_samples=500), StopOnNaNCallback(check_every=7)]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        fit_gan(learn, 2, 1e-3, cbs=cbs)
    jc, cn, _, mon, sr, sm, _ = cbs
    assert next(learn.model.parameters()).device.type == device.type and cn.z.device.type == device.type
    for cb in (jc, cn, mon, sm):   # fetched: plain numbers, finite (but the reverse KL of a generator with no high-quality sample)
        assert all(isinstance(v, (int, float)) and (math.isfinite(v) or k == 'rkl') for row in cb.history for k, v in row.items()), type(cb).__name__
    assert all(q.device.type == 'cpu' for q in jc.q_values) and all(s.device.type == 'cpu' for d in mon.spectra for s in d.values())
    assert isinstance(learn.recorder.values[-1][-1], float)
    ratios = [m.sr_ratio_max for _, m in sn_conv_layers(learn.model.critic.critic)]
    assert all(r.device.type == device.type and not r.isnan().any() for r in ratios)

def test_log_condition_number_on_the_device_matches_the_cpu(device):
    set_seed(0)
    G, z = dcgan_generator(nz=16, width=8), torch.randn(8, 16)
    ref = log_condition_number(G, z)
    G2 = dcgan_generator(nz=16, width=8).to(device); G2.load_state_dict(G.state_dict())
    torch.testing.assert_close(log_condition_number(G2, z.to(device)).cpu(), ref, atol=1e-3, rtol=1e-4)

def test_nan_guard_on_the_device(device):
    g = NaNGuard(every=2)
    assert not g.watch(torch.ones(3, device=device), 0)
    assert g.watch(torch.tensor([1., math.nan], device=device), 1, info=torch.tensor([7.], device=device))
    assert g.check() == (1, True, [7.0])
