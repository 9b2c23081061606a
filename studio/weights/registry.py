"""The pretrained files the studio uses: where they come from and how to recognise them.

Why a registry: users on air-gapped GPU servers must be able to fetch a file elsewhere and bring it
in by hand, so every file has one canonical name, URL, file name, size and hash that the error
messages, ``studio-cli models list`` and the download/import code all share.

Provenance of the numbers (be honest about it): none of these files could be downloaded on the
machine this code was written on (no internet). The URLs are the official ones. The sizes and
sha256 values were cross-checked against several independent public records that state the same
values; each entry's ``provenance`` says which. Where a hash is unknown (``sha256=None``) the
first verified download or import pins it in ``pins.json`` in the cache and later copies are
checked against that pin. The one-shot backends' files (HyperReenact, latent-directions,
DiffusionAct, the FFHQ e4e encoder) live in ``oneshot_entries``.
"""
from __future__ import annotations

from personalize.errors import UserError
from studio.weights.entry import WeightsFile
from studio.weights.oneshot_entries import ONESHOT_ENTRIES

__all__ = ["REGISTRY", "WeightsFile", "get_entry"]

REGISTRY: dict[str, WeightsFile] = {
    "ffhq": WeightsFile(
        name="ffhq",
        description="NVIDIA's official StyleGAN2-ADA generator trained on FFHQ, 1024x1024",
        purpose="personalization: the base generator every personal model starts from",
        url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
        filename="ffhq.pkl",
        size=381_624_121,
        sha256="a205a346e86a9ddaae702e118097d014b7b8bd719491396a162cca438f2f524c",
        provenance="URL from NVlabs/stylegan2-ada-pytorch README. sha256 stated identically by "
                   "several independent public projects; size by one of them. Not downloaded here.",
    ),
    "lpips-alex": WeightsFile(
        name="lpips-alex",
        description="torchvision AlexNet ImageNet weights (LPIPS backbone)",
        purpose="the LPIPS perceptual loss (inversion, personalization, re-enactment)",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        filename="alexnet-owt-7be5be79.pth",
        size=244_408_911,
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        sha256_prefix="7be5be79",
        provenance="URL and prefix from torchvision's AlexNet_Weights.IMAGENET1K_V1 (its meta "
                   "says 233.087 MiB, consistent with the size). Full sha256 and exact size "
                   "stated identically by several independent public projects. Not downloaded here.",
    ),
    "clip-vit-b32": WeightsFile(
        name="clip-vit-b32",
        description="OpenAI CLIP ViT-B/32 (TorchScript archive)",
        purpose="text-guided stylization (StyleGAN-NADA directional CLIP loss)",
        url="https://openaipublic.azureedge.net/clip/models/"
            "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
        filename="ViT-B-32.pt",
        size=353_976_522,
        sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        provenance="URL from the clip package's _MODELS['ViT-B/32']; the package checks the "
                   "sha256 that is the URL's path segment. Size stated identically by several "
                   "independent public projects. Not downloaded here.",
    ),
    **{entry.name: entry for entry in ONESHOT_ENTRIES},
}


def get_entry(name: str) -> WeightsFile:
    """Look a name up at call time (tests and mirrors may replace entries in ``REGISTRY``)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown weights name {name!r}",
                        f"Known names: {', '.join(sorted(REGISTRY))} "
                        "(see `studio-cli models list`).") from None
