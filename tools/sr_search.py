"""The search for a CPU-scale setting where an SN-GAN collapses on Stacked MNIST (notebook 08 shows its results).

    python tools/sr_search.py CRITIC_WIDTH,BATCH,SR,LR,EPOCHS ...   >> nbs/data/sr_search.jsonl

SR is none, static or dynamic. Generator: `dcgan_generator(nz=64, n_channels=3, width=32)`; critic:
`dcgan_critic(n_channels=3, width=CRITIC_WIDTH, norm='spectral')`; non-saturating loss, Adam(0.5, 0.999), seed 0;
50,000 stacked images from the digits `load_mnist` finds. After every epoch it prints one JSON line: modes and KL of
26,000 samples (`stacked_mnist_stats`) and the critic layers' `spectral_collapse` scores.
"""
import time, torch, warnings, sys, json
warnings.filterwarnings('ignore')
from fastai.torch_core import set_seed
from gan_conditioning.all import *

def evaluate(G, clf, seed=0):
    x = generate(G, torch.randn(26_000, 64, generator=torch.Generator().manual_seed(10_000 + seed)), 1_000)
    return stacked_mnist_stats(x, clf, progress=False)

def main(args):
    real, _ = stacked_mnist(50_000, load_mnist(download=False, verbose=False), seed=0)
    clf = mnist_classifier()
    for a in args:
        dw, bs, sr, lr, ep = a.split(',')
        cfg = dict(dw=int(dw), bs=int(bs), sr=sr, lr=float(lr), ep=int(ep))
        set_seed(0)
        cbs = [SpectralRegularizationCallback(sr)] if sr != 'none' else []
        learn = gan_learner(gan_dls(real, nz=64, bs=cfg['bs']), dcgan_generator(nz=64, n_channels=3, width=32),
                            dcgan_critic(n_channels=3, width=cfg['dw'], norm='spectral'), cbs=cbs)
        t = time.time()
        for e in range(cfg['ep']):
            fit_gan(learn, 1, cfg['lr'])
            s = evaluate(learn.model.generator, clf)
            col = {k: round(spectral_collapse(v).item(), 3) for k, v in weight_spectra(learn.model.critic).items()}
            print(json.dumps(dict(cfg=cfg, epoch=e, t=round(time.time() - t), modes=s.modes, kl=round(s.kl, 2), collapse=col)), flush=True)

if __name__ == '__main__': main(sys.argv[1:])
