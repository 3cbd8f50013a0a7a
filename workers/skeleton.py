"""The COCO-17 skeleton: keypoint names, limbs, and the keypoints the original score uses.

Defined once here. The names match torchvision's
``KeypointRCNN_ResNet50_FPN_Weights.COCO_V1.meta["keypoint_names"]`` (a test checks that), and
the YOLO-pose models use the same COCO order.
"""

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


def _pairs(*names: tuple[str, str]) -> tuple[tuple[int, int], ...]:
    return tuple((_INDEX[a], _INDEX[b]) for a, b in names)


#: The 16 limbs drawn between keypoints, as index pairs into KEYPOINT_NAMES.
LIMBS: tuple[tuple[int, int], ...] = _pairs(
    ("left_eye", "nose"),
    ("right_eye", "nose"),
    ("left_eye", "left_ear"),
    ("right_eye", "right_ear"),
    ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
    ("left_shoulder", "right_shoulder"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"),
)

#: The 9 keypoints whose distances make the original DancingSkeletons score.
SCORE_KEYPOINTS: tuple[int, ...] = tuple(
    _INDEX[name]
    for name in (
        "nose",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    )
)

#: A person standing with arms slightly out, in COCO-17 order: (x, y) in units of about a
#: third of the body's height, the hips' midpoint at the origin, y down. For stand-in models
#: (tests, the machinery benchmark) that need plausible skeletons without inference.
STANDING_POSE: tuple[tuple[float, float], ...] = (
    (0.0, -1.6), (-0.1, -1.7), (0.1, -1.7), (-0.2, -1.65), (0.2, -1.65),
    (-0.4, -1.2), (0.4, -1.2), (-0.6, -0.7), (0.6, -0.7), (-0.7, -0.2), (0.7, -0.2),
    (-0.3, 0.0), (0.3, 0.0), (-0.35, 0.8), (0.35, 0.8), (-0.4, 1.6), (0.4, 1.6),
)
