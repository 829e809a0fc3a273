import os, pytest, torch

@pytest.fixture
def device():
    "The device that the device tests train on: $GC_TEST_DEVICE (`tools/gpu_check.sh` sets 'cuda'), else the CPU."
    d = torch.device(os.environ.get('GC_TEST_DEVICE', 'cpu'))
    if d.type == 'cuda' and not torch.cuda.is_available(): pytest.skip('GC_TEST_DEVICE asks for CUDA, which this machine lacks')
    return d
