"""Names of a gallery folder (the static listening gallery of one run; see :mod:`analysis.runs.layout`)."""

from __future__ import annotations

GALLERY_DIR = "gallery"
GALLERY_JSON = "gallery.json"
GALLERY_NEURONS_DIR = "neurons"
GALLERY_IMAGES_DIR = "images"
GALLERY_AUDIO_DIR = "audio"
#: Every neuron's top clips as JavaScript data, loaded by the gallery's lookup box on demand.
GALLERY_LOOKUP_JS = "lookup.js"


def gallery_neuron_page(layer: int, neuron: int) -> str:
    """Path of a neuron's page, relative to the gallery folder."""
    return f"{GALLERY_NEURONS_DIR}/l{layer}_n{neuron}.html"


def gallery_image(layer: int, neuron: int, rank: int) -> str:
    """Path of the spectrogram + activation image of a neuron's ``rank``-th top clip (0-based), relative to
    the gallery folder."""
    return f"{GALLERY_IMAGES_DIR}/l{layer}_n{neuron}_r{rank}.png"


def gallery_audio(index: int, start_ms: int, stop_ms: int) -> str:
    """Path of the WAV excerpt ``[start_ms, stop_ms)`` of dataset clip ``index``, relative to the gallery
    folder (clips shared by several neurons with the same excerpt are written once)."""
    return f"{GALLERY_AUDIO_DIR}/clip{index}_{start_ms}-{stop_ms}ms.wav"
