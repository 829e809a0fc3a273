"Spectral monitoring and Spectral Regularization, checked against a NumPy transcription of the reference algorithm."
import warnings
import numpy as np, pytest, torch, torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm
from fastai.torch_core import set_seed
from fastai.layers import ConvLayer, NormType
from gan_conditioning.data import gan_dls, load_mnist
from gan_conditioning.models import gan_learner, dcgan_generator, dcgan_critic
from gan_conditioning.spectral import *
from gan_conditioning.regularization import *

warnings.filterwarnings('ignore', message='You are shadowing an attribute')


def _critic(seed=0):
    "Three SN convs, two of them with the same matrix shape (one batched SVD), and an SN linear layer (left alone)."
    torch.manual_seed(seed)
    return nn.Sequential(spectral_norm(nn.Conv2d(3, 8, 3)), spectral_norm(nn.Conv2d(8, 8, 3)), spectral_norm(nn.Conv2d(8, 8, 3)),
                         nn.Flatten(), spectral_norm(nn.Linear(8, 4)))


def _reference_sr(W, mode, gamma=None, ratio_max=None):
    "NumPy transcription of the authors' SR step on one kernel (float64)."
    Wm = W.reshape(W.shape[0], -1).astype(np.float64)
    U, s, V = np.linalg.svd(Wm, full_matrices=False)
    if mode == 'static':
        s = s / s.max(); s[:(len(s) // 2 if gamma is None else gamma)] = 1
        return (U @ np.diag(s) @ V).reshape(W.shape), None
    r = np.maximum(s / s.max(), ratio_max)
    return (U @ np.diag(s.max() * r) @ V).reshape(W.shape), r


@pytest.mark.parametrize('gamma', [None, 1, 3])
def test_static_matches_reference_and_sets_top_gamma(gamma):
    D = _critic()
    convs = [m for _, m in sn_conv_layers(D)]
    assert len(convs) == 3
    before = [raw_weight(m).detach().numpy().copy() for m in convs]
    lin_before = raw_weight(D[4]).detach().clone()
    spectral_regularize(D, 'static', gamma)
    for m, W0 in zip(convs, before):
        ref, _ = _reference_sr(W0, 'static', gamma)
        np.testing.assert_allclose(raw_weight(m).detach().numpy(), ref, atol=1e-5)
        s0 = np.linalg.svd(W0.reshape(W0.shape[0], -1), compute_uv=False); s0 = s0 / s0[0]
        s1 = np.linalg.svd(raw_weight(m).detach().numpy().reshape(W0.shape[0], -1), compute_uv=False); s1 = s1 / s1[0]
        g = len(s0) // 2 if gamma is None else gamma
        np.testing.assert_allclose(s1[:g], 1, atol=1e-5)
        np.testing.assert_allclose(s1[g:], s0[g:], atol=1e-5)
    assert torch.equal(raw_weight(D[4]), lin_before)  # conv layers only, as in the reference


def test_dynamic_matches_reference_over_several_calls():
    D = _critic(1)
    convs = [m for _, m in sn_conv_layers(D)]
    g = torch.Generator().manual_seed(0)
    ref_r = [None] * 3
    for step in range(6):
        with torch.no_grad():  # a "training step": perturb the weights, sometimes so that ratios drop
            for m in convs: raw_weight(m).mul_(torch.rand(raw_weight(m).shape, generator=g) ** 2)
        before = [raw_weight(m).detach().numpy().copy() for m in convs]
        spectral_regularize(D, 'dynamic')
        for i, (m, W0) in enumerate(zip(convs, before)):
            if ref_r[i] is None:  # the first call records only
                s = np.linalg.svd(W0.reshape(W0.shape[0], -1), compute_uv=False); ref_r[i] = s / s[0]
                np.testing.assert_array_equal(raw_weight(m).detach().numpy(), W0)
            else:
                ref, ref_r[i] = _reference_sr(W0, 'dynamic', ratio_max=ref_r[i])
                np.testing.assert_allclose(raw_weight(m).detach().numpy(), ref, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(m.sr_ratio_max.numpy(), ref_r[i], atol=1e-5)
            s = np.linalg.svd(raw_weight(m).detach().numpy().reshape(W0.shape[0], -1), compute_uv=False)
            assert (s / s[0] >= m.sr_ratio_max.numpy() - 1e-5).all()  # never below the running maximum


def test_old_spectral_norm_api_fastai_convlayer():
    "fastai's ConvLayer(norm_type=NormType.Spectral) uses torch.nn.utils.spectral_norm (weight_orig)."
    torch.manual_seed(0)
    D = nn.Sequential(ConvLayer(3, 8, norm_type=NormType.Spectral), ConvLayer(8, 8, norm_type=NormType.Spectral))
    assert len(sn_conv_layers(D)) == 2
    spectral_regularize(D, 'static')
    for _, m in sn_conv_layers(D):
        s = torch.linalg.svdvals(m.weight_orig.detach().flatten(1))
        torch.testing.assert_close(s[:len(s) // 2], torch.ones(len(s) // 2), atol=1e-5, rtol=0)


def test_weight_spectra_reads_without_side_effects():
    "Reading the spectra must not run a power-iteration step of a spectral-norm layer in training mode."
    D = _critic()
    u = [b.clone() for n, b in D.named_buffers() if n.endswith('_u')]
    spectra = weight_spectra(D)
    assert all(torch.equal(a, b) for a, b in zip(u, [b for n, b in D.named_buffers() if n.endswith('_u')]))
    W = raw_weight(D[1]).detach().flatten(1).double().numpy()
    s = np.linalg.svd(W, compute_uv=False)
    np.testing.assert_allclose(spectra['1'].numpy(), s / s[0], rtol=1e-5)
    assert spectral_collapse(spectra['1']).item() == pytest.approx(1 - (s / s[0]).mean(), abs=1e-6)


def _mnist_learner(cbs=None, seed=0):
    set_seed(seed)
    x = load_mnist(download=False, verbose=False, n=640).images
    return gan_learner(gan_dls(x, nz=16, bs=64), dcgan_generator(nz=16, width=8), dcgan_critic(width=8, norm='spectral'), cbs=cbs)


def test_gamma_zero_is_plain_sn_bit_for_bit():
    a = _mnist_learner()
    with a.no_bar(), a.no_logging(): a.fit(1, 2e-4)
    b = _mnist_learner(cbs=SpectralRegularizationCallback('static', gamma=0, every=1))
    with b.no_bar(), b.no_logging(): b.fit(1, 2e-4)
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_checkpoint_restores_running_maxima(tmp_path):
    learn = _mnist_learner(cbs=SpectralRegularizationCallback('dynamic', every=2))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 2e-4)
    state = {n: m.sr_ratio_max.clone() for n, m in learn.spectral_regularization.layers}
    assert all(not s.isnan().any() for s in state.values())
    learn.path = tmp_path; learn.save('ck')
    resumed = _mnist_learner(cbs=SpectralRegularizationCallback('dynamic', every=2), seed=1)
    assert all(m.sr_ratio_max.isnan().all() for _, m in resumed.spectral_regularization.layers)
    resumed.path = tmp_path; resumed.load('ck')
    for n, m in resumed.spectral_regularization.layers: assert torch.equal(m.sr_ratio_max, state[n])
    with resumed.no_bar(), resumed.no_logging(): resumed.fit(1, 2e-4)
    for n, m in resumed.spectral_regularization.layers: assert (m.sr_ratio_max >= state[n]).all()


def test_monitor_records_and_errors():
    learn = _mnist_learner()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 2e-4, cbs=SpectralMonitorCallback(every=3))
    mon = learn.spectral_monitor
    assert len(mon.spectra) == len(mon.history) == 1 + mon.crit_steps // 3
    assert all(0 <= h['sv_collapse'] < 1 for h in mon.history)
    with pytest.raises(ValueError, match='warn_drop'): SpectralMonitorCallback(warn_drop=2.)
    with pytest.raises(ValueError, match="norm='spectral'"):
        set_seed(0)
        gan_learner(gan_dls(load_mnist(download=False, verbose=False, n=640).images, nz=16, bs=64),
                    dcgan_generator(nz=16, width=8), dcgan_critic(width=8), cbs=SpectralRegularizationCallback())


def test_other_parametrizations_and_bad_inputs():
    "weight_norm splits W into two parameters: the spectrum is read from the effective weight; SR refuses non-SN critics."
    lin = nn.utils.parametrizations.weight_norm(nn.Linear(6, 4))
    s = weight_spectra(nn.Sequential(lin))['0']
    ref = torch.linalg.svdvals(lin.weight.detach().double())
    torch.testing.assert_close(s.double(), ref / ref[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="norm='spectral'"): spectral_regularize(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(ValueError, match="mode"): spectral_regularize(_critic(), mode='both')
