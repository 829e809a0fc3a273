"""The tutorials' powered studies (issue 25), written into the repository run by run so that a new machine resumes them.

    python tools/powered_studies.py ring     # baseline, jc, pac2 on the ring, seeds 0-63 (192 runs, ~1 h with 2 cores free)
    python tools/powered_studies.py grid     # GAN vs PacGAN2 on pacgan-grid at the tutorial's setting, seeds 0-25 (52 runs, ~6 h)
    python tools/powered_studies.py pl-ring  # issue 24: baseline, JC, StyleGAN2's PL, JC+PL on the ring, seeds 0-15 (32 new runs)
    python tools/powered_studies.py pl-mnist # the same four on odena-mnist, seeds 0-4 (20 runs, 75 min with --jobs 2)
    python tools/powered_studies.py conditional   # odena-mnist-cond: baseline, jc, sr-static+ns+crit1, seeds 0-4 (15 runs, ~1 h with 2 cores free)
    python tools/powered_studies.py --finished ring   # read back what has finished (trains nothing) and rewrite its tables

Each finished run is a JSON file under nbs/data/studies/powered/<dataset>/runs/ (results, curves and, for the 2-D
mixtures, the 2,500 final samples; no checkpoints, to keep the repository small). Stop it at any time: the same
command trains only the runs that are missing. Commit the run files at the end of every session.

Fixed before the runs, and to be read as such in the tutorials:
- ring (Odena et al.'s inter-run variance; PacGAN's ring row): the dataset's defaults, 25 epochs. JC: variance ratio
  JC/baseline of the high-quality share and of the modes, with its bootstrap interval and the Brown-Forsythe p; the
  within-baseline Spearman correlation of final log kappa with hq (permutation p). JC and PacGAN2: the share of runs
  that end with fewer than 8 modes (Fisher's exact test against the baseline) and the mean modes (two-sided
  permutation p). n = 64 an arm.
- grid (PacGAN Table 1's grid row): lr 5e-4, 10,000 generator steps, measured every 1,000 (the tutorial's setting,
  chosen on seeds 0-1 by its learning-rate search). The test: two-sided permutation test of the mean final modes,
  GAN against PacGAN2, read on seeds 2-25 only (24 an arm), which played no part in choosing the setting; modes, hq
  and reverse KL reported with n, mean +- SE and p.
- pl-ring, pl-mnist (issue 24: JC against StyleGAN2's path-length penalty, at its defaults: w = 2, decay 0.01, half
  the batch, lazily every 4 generator steps): final mean log kappa and its spread over latents, the scores with
  precision, recall, density and coverage, and the inter-run variance (`compare_variants`), each arm against the
  baseline and PL against JC; n = 16 (ring) and 5 (MNIST) an arm.
- conditional (issue 23: Odena et al. §5's open question, at CPU scale): odena-mnist-cond (the odena-mnist optimiser,
  widths 16, 8,000 generator steps, measured every 500) with baseline, JC at the paper's bounds, and SN + static SR
  with Odena's loss and one critic step (`sr-static+ns+crit1`; SN-GAN's betas (0, 0.9)), seeds 0-4. Read: final mean
  log kappa overall and per class, label accuracy, intra-class Frechet distance (`compare_variants`, n, mean +- SE, p),
  beside the unconditional odena-mnist tutorial's numbers.
"""
import sys
import torch
from gan_conditioning.studies import run_study

OUT = 'nbs/data/studies/powered'
STUDIES = {
    'ring': dict(dataset='ring', variants=['baseline', 'jc', 'pac2'], seeds=64),
    'grid': dict(dataset='pacgan-grid', variants=['baseline', 'pac2'], seeds=26, lr=5e-4, steps=10_000, every=1_000),
    'pl-ring': dict(dataset='ring', variants=['baseline', 'jc', 'pl', 'jc+pl'], seeds=16),   # baseline and jc: the ring study's seeds 0-15
    'pl-mnist': dict(dataset='odena-mnist', variants=['baseline', 'jc', 'pl', 'jc+pl'], seeds=5, steps=8_000, every=500),
    'conditional': dict(dataset='odena-mnist-cond', variants=['baseline', 'jc', 'sr-static+ns+crit1'], seeds=5, steps=8_000, every=500),
}

def finished(name):
    "The study as far as it has run: every seed whose runs have all finished, read back (nothing trains); writes its tables."
    from pathlib import Path
    from gan_conditioning.protocols import study_data
    kw = STUDIES[name]
    runs = Path(OUT) / study_data(kw['dataset']).name / 'runs'
    seeds = [s for s in range(kw['seeds']) if all((runs / f"{v}-seed{s}.json").exists() for v in kw['variants'])]
    return run_study(**{**kw, 'seeds': seeds}, out=OUT, checkpoints=False, progress=False)

if __name__ == '__main__':
    if {'-h', '--help'} & set(sys.argv) or any(a not in STUDIES and not a.startswith('--') for a in sys.argv[1:]):
        sys.exit(__doc__ + f"\nstudies: {', '.join(STUDIES)}")   # nothing trains on a typo
    jobs = int(next((a.split('=')[1] for a in sys.argv[1:] if a.startswith('--jobs=')), 2))
    if '--finished' in sys.argv:   # the tables of what has finished, e.g. before committing the run files
        for name in [a for a in sys.argv[1:] if not a.startswith('--')] or list(STUDIES): print(finished(name).summary())
        sys.exit()
    if jobs == 1: torch.set_num_threads(1)   # leave the other core to other work
    for name in [a for a in sys.argv[1:] if not a.startswith('--')] or list(STUDIES):
        study = run_study(**STUDIES[name], jobs=jobs, out=OUT, checkpoints=False)
        print(study.summary())
