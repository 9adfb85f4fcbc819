import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Model tests run on one intra-op thread: tiny models are faster that way, and on a
    shared 2-core machine the R50 parity passes were ~2x faster too; restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
