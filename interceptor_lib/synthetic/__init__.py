"""The synthetic demo corpus: FaceForensics++, Celeb-DF v2, WildDeepfake and DFDC look-alikes in
their official on-disk layouts, rendered locally and deterministically from a seed, so that the
whole pipeline runs and is tested without the real (non-downloadable) data.

Faces are procedurally drawn (many identities, head motion, blinks, a mouth driven by speech-like
audio) so that the project's Haar face detector finds them; fakes carry exactly one of six artifact
families (low light, lighting, compression, resolution, temporal, audio-visual sync). It is a test
harness for the pipeline, not a claim about real-world accuracy.

    from interceptor_lib.synthetic import make_demo_data, DEMO_ROOTS
    report = make_demo_data("outputs/demo_data", seed=0, scale="small")
"""

from interceptor_lib.synthetic.artifacts import FAMILIES, VISUAL_FAMILIES
from interceptor_lib.synthetic.corpus import MANIFEST, DemoReport, make_demo_data
from interceptor_lib.synthetic.detect_rate import SIDE_TABLE, DetectionRate, measure_face_detection_rate
from interceptor_lib.synthetic.layouts import DEMO_ROOTS, FFPP_METHODS
from interceptor_lib.synthetic.scales import SCALES, ScaleSpec, get_scale

__all__ = ["make_demo_data", "DEMO_ROOTS", "DemoReport", "measure_face_detection_rate", "DetectionRate",
           "SCALES", "ScaleSpec", "get_scale", "FAMILIES", "VISUAL_FAMILIES", "FFPP_METHODS", "MANIFEST",
           "SIDE_TABLE"]
