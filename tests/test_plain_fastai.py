"""The callbacks on a plain fastai GANLearner (fastai's defaults, fastai's own networks), not only on `gan_learner`."""
import math, torch, torch.nn.functional as F
from fastai.vision.gan import GANLearner, basic_generator, basic_critic
from fastai.torch_core import set_seed
from gan_conditioning.all import *

def _mnist(n=640, pad=0):
    x = load_mnist(download=False, verbose=False, n=n).images
    return F.pad(x, (pad,) * 4, value=-1.) if pad else x

def _check(learn, n_gen_steps):
    cn, jc = learn.condition_number, learn.jacobian_clamp
    assert len(cn.history) == 2 and all(math.isfinite(h['log_cond']) for h in cn.history)
    assert len(jc.history) == n_gen_steps and all(math.isfinite(h['q_mean']) and h['q_mean'] > 0 for h in jc.history)
    names = learn.recorder.metric_names
    assert 'Q' in names and 'log_cond' in names

def test_dcgan_on_mnist_plain_ganlearner():
    set_seed(0)
    dls = gan_dls(_mnist(), nz=64, bs=64)
    learn = GANLearner(dls, dcgan_generator(nz=64, width=16), dcgan_critic(width=16), *ns_loss(), show_img=False)
    learn.fit(1, 2e-4, cbs=[JacobianClampCallback(), ConditionNumberCallback()])
    _check(learn, n_gen_steps=len(dls.train) // 2)

def test_fastai_basic_dcgan_wgan_on_mnist():
    "fastai's own `basic_generator`/`basic_critic` and `GANLearner.wgan`, on MNIST padded to 32×32."
    set_seed(0)
    dls = gan_dls(_mnist(pad=2), nz=64, bs=64)
    G = basic_generator(32, n_channels=1, in_sz=64, n_extra_layers=0)
    C = basic_critic(32, n_channels=1, n_extra_layers=0)
    learn = GANLearner.wgan(dls, G, C, show_img=False)
    ntk = CriticNTKCallback(every=3, n_real=16)
    learn.fit(1, 1e-4, cbs=[JacobianClampCallback(lambda_min=0.5, lambda_max=5.), ConditionNumberCallback(), ntk])
    assert len(ntk.history) == 1 + ntk.crit_steps // 3 >= 2 and 'ntk_rank' in learn.recorder.metric_names
    assert all(1 <= h['ntk_rank'] <= 32 and h['ntk_trace'] > 0 for h in ntk.history)   # fastai's critic (BN, eval mode), 16 + 16 samples
    n_gen = len(learn.jacobian_clamp.history)
    assert n_gen >= 1  # wgan trains the critic 5× per generator step: few generator steps
    _check(learn, n_gen_steps=n_gen)

def test_cuda_or_cpu_device_follows_the_learner():
    "The fixed latents live where the generator lives."
    set_seed(0)
    learn = gan_learner(gan_dls(ring_data(1000), nz=2, bs=100), mlp_generator(), mlp_critic())
    learn.fit(1, 1e-3, cbs=ConditionNumberCallback())
    assert learn.condition_number.z.device == next(learn.model.generator.parameters()).device
