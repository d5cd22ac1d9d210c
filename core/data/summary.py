"""A dataset described in a few lines of text (the Dataset Preview node's summary and the Train log)."""
from __future__ import annotations

from .dataset_metadata import concept_dirs, tag_frequency


def summary(dataset, batch_size: int = 1, epochs: int = 1, top_tags: int = 20) -> str:
    """Images and regularization images, samples and steps per epoch, images per concept, buckets and each
    concept's most frequent tags; ``dataset`` is a KilnDataset."""
    images = dataset.images
    counts = dataset.bucket_counts()
    n_train = sum(1 for e in images if not e.is_reg)
    n_reg = len(images) - n_train
    lines = [f"{n_train} training images" + (f", {n_reg} regularization images (balanced to the training "
                                             f"count, loss weight {dataset.config.prior_loss_weight})" if n_reg else ""),
             f"{dataset.samples_per_epoch()} samples per epoch; at batch {batch_size}: "
             f"{dataset.steps_per_epoch(batch_size)} steps per epoch x {epochs} epochs = "
             f"{dataset.total_steps(epochs, batch_size)} steps (each bucket's last batch may be partial)"]
    for is_reg in (False, True):
        for concept, d in concept_dirs(images, is_reg).items():
            lines.append(f"  {'reg ' if is_reg else ''}{concept}: {d['img_count']} images x {d['n_repeats']} repeats")
    lines.append(f"{len(counts)} buckets: " + ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(counts.items())))
    for concept, tags in tag_frequency(images).items():
        top = list(tags.items())[:top_tags]
        more = len(tags) - len(top)
        lines.append(f"tags in {concept}: " + ", ".join(f"{t} ({n})" for t, n in top)
                     + (f" ... and {more} more" if more > 0 else ""))
    return "\n".join(lines)
