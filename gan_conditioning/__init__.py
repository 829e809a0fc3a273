__version__ = "0.0.1"

import warnings
# fastai (2.8) compiles a layer with `torch.jit.script` at import, which torch >= 2.10 deprecates with a FutureWarning
# that every `gc-study` would print first; it is fastai's to fix, and says nothing about this library's use
warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
