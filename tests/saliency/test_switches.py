"""Settings switched for a computation are restored, and never change other threads'."""

import threading

import torch
from torch import nn

from fusevis.saliency.switches import flushed_denormals, flushing_denormals, frozen_parameters


def _in_new_thread(function):  # noqa: ANN001, ANN202
    found = []
    thread = threading.Thread(target=lambda: found.append(function()))
    thread.start()
    thread.join()
    return found[0]


def test_flushing_is_restored_to_what_it_was() -> None:
    assert not flushing_denormals()
    with flushed_denormals():
        assert flushing_denormals()
        with flushed_denormals():
            assert flushing_denormals()
        assert flushing_denormals()  # the inner one found it on and left it on
    assert not flushing_denormals()
    torch.set_flush_denormal(True)  # a caller's own choice
    try:
        with flushed_denormals():
            assert flushing_denormals()
        assert flushing_denormals(), "the caller's setting was switched off"
    finally:
        torch.set_flush_denormal(False)


def test_flushing_is_per_thread() -> None:
    started, release = threading.Event(), threading.Event()
    seen = []

    def other() -> None:  # a thread that exists before the switch, like the viewer's
        started.set()
        release.wait()
        seen.append(flushing_denormals())

    thread = threading.Thread(target=other)
    thread.start()
    started.wait()
    with flushed_denormals():
        release.set()
        thread.join()
    assert seen == [False]
    assert not _in_new_thread(flushing_denormals)


def test_frozen_parameters_are_restored_after_the_last_of_overlapping_users() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 1, 1))
    model[1].bias.requires_grad_(False)  # a flag of the caller's, kept
    flags = [p.requires_grad for p in model.parameters()]
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def a() -> None:
        with frozen_parameters(model):
            a_in.set()
            b_in.wait()
        a_out.set()

    def b() -> None:
        a_in.wait()
        with frozen_parameters(model):  # enters while a holds it
            b_in.set()
            a_out.wait()
            seen.append([p.requires_grad for p in model.parameters()])  # a has left

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [[False] * len(flags)]  # still frozen for b after a left
    assert [p.requires_grad for p in model.parameters()] == flags
