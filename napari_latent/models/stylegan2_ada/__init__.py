"""Official StyleGAN2-ADA (PyTorch) snapshots, read without executing them.

A ``network-snapshot-*.pkl`` written by the official training loop is a pickle whose
networks are "persistent objects": records holding each module's class name, its
``__dict__`` and the complete source of the module that defines it (unpickling it the
usual way runs that source). Here nothing in the file runs:

:mod:`.unpickler`
    A restricted unpickler with a small allow-list of globals, each mapped to our own
    inert function; persistent-object records become plain data; the embedded source is
    only parsed (``ast``) to refuse files whose source would run code at import.
:mod:`.storage`
    Our parser of torch's legacy storage stream (the bytes inside each tensor record).
:mod:`.snapshot`
    Snapshot records to a plain configuration and state dicts, with checks.
:mod:`.ops`, :mod:`.networks`
    Our re-implementation of the generator and discriminator (from the StyleGAN2 and
    StyleGAN2-ADA papers, tuned against reference outputs of the official code).
:mod:`.model`
    The ``"stylegan2-ada"`` model family; :mod:`.importer` registers the importer.
"""
