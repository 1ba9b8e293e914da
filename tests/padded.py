"""Random right-padded batches for the parity tests of the inference paths."""
import torch


def right_padded_batch(lengths, vocab, seed=0):
    """Ids (len(lengths), max(lengths)) from a generator seeded ``seed``, and the attention mask
    that keeps the first ``lengths[i]`` tokens of row i."""
    gen = torch.Generator().manual_seed(seed)
    length = max(lengths)
    ids = torch.randint(0, vocab, (len(lengths), length), generator=gen)
    mask = (torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids, mask
