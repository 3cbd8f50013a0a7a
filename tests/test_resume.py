"""What makes an earlier run's outputs reusable: the fingerprint of the result settings."""

import re

from config import Config
from reports.report import fingerprint


def test_fingerprint_follows_result_settings_only():
    base = Config(input="a.mp4", output="out/a.mp4")
    same = base.replace(input="b.mov", output="x/b.mp4", device="cpu", batch_size=16, progress=False,
                        verbose=True, queue_size=2, video=False, save_poses=False, log_file="n.log")
    assert fingerprint(same) == fingerprint(base)
    assert fingerprint(base.replace(person_threshold=0.9)) == fingerprint(base)  # the default, resolved
    for change in ({"person_threshold": 0.8}, {"score": False}, {"crf": 30}, {"model_min_size": 400},
                   {"weights": "w.pth"}, {"display_window": 5}):
        assert fingerprint(base.replace(**change)) != fingerprint(base), change
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fingerprint(base))
