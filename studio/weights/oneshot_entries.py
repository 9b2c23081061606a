"""Registry entries for the one-shot backends and the encoder that gives personalization its anchors.

Facts, each checked in the official repositories (the commits read are in ``provenance``):
Google Drive ids from the READMEs, file names from the official configs and argument defaults,
archive member paths from the paths the official code loads. None of these files could be
downloaded here (no internet), so sizes and hashes are unknown (``None``): the first verified
download or import pins the sha256 (``pins.json``). The one exception is FLAME's landmark
embedding, a small file kept in DECA's git repository, whose size and hash were computed from
that repository.

Licences: HyperReenact, latent-directions and DiffusionAct publish their code and weights without
a licence; DECA, EMOCA and FLAME come under the Max Planck Institute's non-commercial research
licences; the ETH-XGaze gaze model under CC BY-NC-SA 4.0. The notes below are shown once, and must
be accepted, before the studio downloads a file (``studio.weights.licences``).
"""
from __future__ import annotations

from studio.weights.entry import WeightsFile
from studio.weights.gdrive import view_url

_HR = "StelaBou/HyperReenact README (commit 1b66485)"
_DIR = "StelaBou/stylegan_directions_face_reenactment README (commit 98abb3b)"
_DA = "StelaBou/Diffusion-Act README (commit 04b9957)"
_UNPINNED = "Size and sha256 unknown (not downloadable here): pinned by the first verified copy."

_RESEARCH_ONLY = ("Use it only for non-commercial research; you are responsible for following "
                  "the terms of its authors and of the data it was trained on.")


def _no_licence(repo: str, what: str) -> str:
    return (f"{what} is published by the authors of {repo} without a licence, so no rights are "
            f"granted beyond the academic research it was shared for. {_RESEARCH_ONLY}")


_HYPERREENACT_NOTE = _no_licence(
    "github.com/StelaBou/HyperReenact and github.com/StelaBou/stylegan_directions_face_reenactment",
    "This model (trained on VoxCeleb1; the generator with NVIDIA's stylegan2-ada-pytorch, whose "
    "licence is non-commercial)")
_DIRECTIONS_NOTE = _no_licence("github.com/StelaBou/stylegan_directions_face_reenactment",
                               "The learned direction matrix")
_DIFFUSIONACT_NOTE = _no_licence("github.com/StelaBou/Diffusion-Act",
                                 "The DiffusionAct model (trained on VoxCeleb1)")
_ARCFACE_NOTE = _no_licence(
    "github.com/StelaBou/HyperReenact",
    "This copy of the ArcFace IR-SE50 weights of github.com/TreB1eN/InsightFace_Pytorch (MIT code; "
    "face-recognition training data)")
_DIFFAE_NOTE = _no_licence(
    "github.com/StelaBou/Diffusion-Act",
    "This archive of the DiffAE FFHQ-256 checkpoint (github.com/phizaz/diffae, MIT code; trained on "
    "FFHQ, whose licence is CC BY-NC-SA 4.0)")
_DECA_NOTE = ("DECA's model and data are licensed by the Max Planck Institute for Intelligent "
              "Systems for non-commercial scientific research only "
              "(https://github.com/yfeng95/DECA/blob/master/LICENSE). Downloading them means you "
              "agree to those terms. This copy is linked by the HyperReenact authors.")
_EMOCA_NOTE = ("EMOCA's model is licensed by the Max Planck Institute for Intelligent Systems for "
               "non-commercial scientific research only (https://emoca.is.tue.mpg.de/license.html)."
               " Downloading it means you agree to those terms. This archive is linked by the "
               "DiffusionAct authors.")
_GAZE_NOTE = ("The ETH-XGaze gaze estimator (github.com/xucong-zhang/ETH-XGaze) is licensed under "
              "CC BY-NC-SA 4.0 (https://creativecommons.org/licenses/by-nc-sa/4.0/): "
              "non-commercial use, with attribution, derivatives under the same licence. This copy "
              "is linked by the DiffusionAct authors (repository without a licence).")
_FLAME_NOTE = ("FLAME is licensed by the Max Planck Institute for Intelligent Systems for "
               "non-commercial scientific research only, after registration at "
               "https://flame.is.tue.mpg.de.")
_E4E_FFHQ_NOTE = ("The e4e FFHQ encoder (github.com/omertov/encoder4editing, MIT code) contains a "
                  "StyleGAN2 FFHQ generator converted from NVIDIA's models (NVIDIA's "
                  "non-commercial licence) and is trained on FFHQ (CC BY-NC-SA 4.0). "
                  + _RESEARCH_ONLY)

DECA_GIT_COMMIT = "a11554ae2a2b0f3998cf1fa94dd4db03babb34a2"


def _drive(file_id: str, **fields: object) -> WeightsFile:
    return WeightsFile(url=view_url(file_id), source="gdrive", gdrive_id=file_id, size=None,
                       sha256=None, file_format="torch", **fields)  # type: ignore[arg-type]


ONESHOT_ENTRIES: tuple[WeightsFile, ...] = (
    _drive(
        "1cBwIFwq6cYIA5iR8tEvj6BIL7Ji7azIH",
        name="stylegan2-voxceleb",
        description="StyleGAN2 generator trained on VoxCeleb1, 256 px (rosinality layout)",
        purpose="HyperReenact, latent-directions: the generator that renders the face",
        filename="stylegan-voxceleb.pt",
        licence=_HYPERREENACT_NOTE,
        provenance=f"Drive id from {_HR} and {_DIR} (the same id); file name from "
                   f"libs/configs/config_models.py. {_UNPINNED}",
    ),
    _drive(
        "1TRATaREBi4VCMITUZV0ZO2XFU3YZKGlQ",
        name="e4e-voxceleb",
        description="e4e encoder (IR-SE50, 14 styles) trained on VoxCeleb1",
        purpose="HyperReenact, latent-directions: inverts the source image into W+",
        filename="e4e-voxceleb.pt",
        licence=_HYPERREENACT_NOTE,
        provenance=f"Drive id from {_HR} and {_DIR} (the same id); file name from "
                   f"libs/configs/config_models.py. {_UNPINNED}",
    ),
    _drive(
        "1BUp6S3Wf2SeM3a-b_7mkKZyaXAxKhLrI",
        name="hyperreenact-net",
        description="HyperReenact's hypernetwork (refines identity, retargets pose)",
        purpose="HyperReenact: predicts the generator's weight offsets per frame",
        filename="hypernetwork.pt",
        licence=_HYPERREENACT_NOTE,
        provenance=f"Drive id from {_HR}; file name from run_inference.py --model_path. "
                   f"{_UNPINNED}",
    ),
    _drive(
        "1F3wrQALEOd1Vku8ArJ_Gn4T6U3IX7Pz7",
        name="arcface-irse50",
        description="ArcFace IR-SE50 face recognition network (TreB1eN/InsightFace_Pytorch)",
        purpose="HyperReenact: the appearance (identity) encoder of the source",
        filename="insight_face.pth",
        licence=_ARCFACE_NOTE,
        provenance=f"Drive id from {_HR} (Auxiliary Models); file name from "
                   f"libs/configs/config_models.py app_encoder_path. {_UNPINNED}",
    ),
    _drive(
        "1BHVJAEXscaXMj_p2rOsHYF_vaRRRHQbA",
        name="deca",
        description="DECA model (ResNet-50 FLAME encoder), from DECA's data.tar.gz",
        purpose="HyperReenact, latent-directions: pose and expression of the driving frames",
        filename="deca_model.tar",
        archive="data.tar.gz",
        members=("data/deca_model.tar", "*/deca_model.tar", "deca_model.tar"),
        licence=_DECA_NOTE,
        provenance=f"Drive id of data.tar.gz from {_HR} and {_DIR} (the same id); the member "
                   "data/deca_model.tar is the official config's "
                   f"./pretrained_models/data/deca_model.tar. {_UNPINNED}",
    ),
    _drive(
        "11aNalhBnPREFQT9i9wmQE0-fkQac4SzQ",
        name="directions-a",
        description="The learned direction matrix A (15 controls -> 8 W+ layers)",
        purpose="latent-directions: maps pose and expression changes to latent shifts",
        filename="A_matrix.pt",
        licence=_DIRECTIONS_NOTE,
        provenance=f"Drive id from {_DIR} (Inference); file name from run_inference.py "
                   f"--A_matrix_model. {_UNPINNED}",
    ),
    _drive(
        "1QKmwW9-yHcC91_f-Mq4maQLdgFrffmdW",
        name="diffae-ffhq256",
        description="DiffAE FFHQ-256 autoencoder (Lightning checkpoint: model and EMA model)",
        purpose="DiffusionAct: the diffusion autoencoder (source inversion, EMA weights)",
        filename="diffae_ffhq256_autoenc_last.ckpt",
        archive="ffhq256_autoenc.zip",
        members=("ffhq256_autoenc/last.ckpt", "*/ffhq256_autoenc/last.ckpt", "*/last.ckpt",
                 "last.ckpt"),
        licence=_DIFFAE_NOTE,
        provenance=f"Drive id of ffhq256_autoenc.zip from {_DA}; the README says to extract it "
                   "under ./checkpoints and libs/templates.py loads "
                   "checkpoints/ffhq256_autoenc/last.ckpt, so the member is "
                   f"ffhq256_autoenc/last.ckpt (other folders accepted by pattern). {_UNPINNED}",
    ),
    _drive(
        "1_pBdrega9Q38BYKx2-V1RavTYyG2BSpv",
        name="diffusionact-net",
        description="DiffusionAct's fine-tuned DiffAE and reenactment encoder",
        purpose="DiffusionAct: renders the source with the driving frame's pose and expression",
        filename="diffusionact_model.pt",
        licence=_DIFFUSIONACT_NOTE,
        provenance=f"Drive id from {_DA}; file name from run_inference.py --model_path. "
                   f"{_UNPINNED}",
    ),
    _drive(
        "1OkzpEkAbI8WugxO7l514JwkYoWqhcnkT",
        name="gaze-xgaze",
        description="ETH-XGaze gaze estimator (ResNet-50, pitch and yaw)",
        purpose="DiffusionAct: the gaze points of the conditioning image",
        filename="gaze_estimation_model.tar",
        licence=_GAZE_NOTE,
        provenance=f"Drive id from {_DA}; file name from run_inference.py "
                   f"(./pretrained_models/gaze_estimation_model.tar). {_UNPINNED}",
    ),
    _drive(
        "1iVNqIvNEHYKtnqsk6h4m7kRXLn5wqGNf",
        name="emoca-v2",
        description="EMOCA v2 (EMOCA_v2_lr_mse_20, detail stage) face reconstruction checkpoint",
        purpose="DiffusionAct: FLAME shape, expression, pose and camera of source and driving",
        filename="emoca_v2_lr_mse_20.ckpt",
        archive="EMOCA.zip",
        members=("*EMOCA_v2_lr_mse_20/detail/checkpoints/*.ckpt",),
        member_pick="lowest_metric",
        licence=_EMOCA_NOTE,
        provenance=f"Drive id of EMOCA.zip from {_DA} (extracted under ./pretrained_models). "
                   "run_inference.py loads run 'EMOCA_v2_lr_mse_20', stage 'detail', mode 'best' "
                   "from ./pretrained_models/EMOCA/models; EMOCA's locate_checkpoint takes, among "
                   "the *.ckpt under detail/checkpoints (searched recursively; 'last' skipped), "
                   "the one with the smallest number after the last '=' of its name; public "
                   "EMOCA layouts name it deca-epoch=10-val_loss/dataloader_idx_0=3.25521111.ckpt. "
                   f"{_UNPINNED}",
    ),
    WeightsFile(
        name="flame",
        description="FLAME 2020 head model (generic_model.pkl)",
        purpose="DiffusionAct (official landmarks): the 68 landmarks of the conditioning image",
        url="https://flame.is.tue.mpg.de",
        filename="generic_model.pkl",
        size=None,
        sha256=None,
        source="manual",
        members=("generic_model.pkl", "*/generic_model.pkl"),
        file_format="pickle",
        licence=_FLAME_NOTE,
        manual_steps="FLAME cannot be downloaded by the studio: it needs a registration. Register "
                     "at https://flame.is.tue.mpg.de, download FLAME 2020 (FLAME2020.zip), then "
                     "run `studio-cli models import flame FILE` with the zip or the "
                     "generic_model.pkl inside it. Without FLAME, DiffusionAct can draw its "
                     "conditioning from MediaPipe's landmarks instead (`--landmarks mediapipe`).",
        provenance="Registration-only download (DECA, EMOCA and DiffusionAct load "
                   "generic_model.pkl). DECA's fetch_data.sh downloads FLAME2020.zip after the "
                   "registration and takes generic_model.pkl from its top level; import accepts "
                   f"that zip or the file. {_UNPINNED}",
    ),
    WeightsFile(
        name="flame-landmarks",
        description="FLAME's 68-landmark embedding (landmark_embedding.npy from DECA)",
        purpose="DiffusionAct (official landmarks): where FLAME's 68 landmarks sit on the mesh",
        url=f"https://raw.githubusercontent.com/yfeng95/DECA/{DECA_GIT_COMMIT}/data/"
            "landmark_embedding.npy",
        filename="landmark_embedding.npy",
        size=31_292,
        sha256="8095348eeafce5a02f6bd8765146307f9567a3f03b316d788a2e47336d667954",
        file_format="npy",
        licence=_DECA_NOTE.replace(" This copy is linked by the HyperReenact authors.", ""),
        provenance=f"data/landmark_embedding.npy of github.com/yfeng95/DECA at {DECA_GIT_COMMIT} "
                   "(unchanged since the initial commit bde12c9); size and sha256 computed from "
                   "that git blob. DECA's and EMOCA's FLAME classes read it as their "
                   "flame_lmk_embedding_path. It is a pickled dict inside .npy: load it with a "
                   "restricted unpickler, never allow_pickle=True.",
    ),
    _drive(
        "1cUv_reLE6k3604or78EranS7XzuVMWeO",
        name="e4e-ffhq",
        description="e4e encoder for FFHQ, 1024 px (18 styles; the pSp-family inverter)",
        purpose="personalization anchors: inverts the self-scan into W in seconds",
        filename="e4e_ffhq_encode.pt",
        licence=_E4E_FFHQ_NOTE,
        provenance="Drive id from omertov/encoder4editing README, 'FFHQ Inversion' (commit "
                   "99ea505); file name e4e_ffhq_encode.pt as used across e4e's users. "
                   f"{_UNPINNED}",
    ),
)
