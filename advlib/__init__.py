"""advlib: detecting and correcting adversarial images with image processing operations.

A reproduction of Nguyen, Kuribayashi, Yamagishi and Echizen, "Effects of Image Processing
Operations on Adversarial Noise and Their Use in Detecting and Correcting Adversarial Images",
IEICE Trans. Inf. & Syst., 2022. One module per concept:

- ``config``: profiles (``params/*.yaml``) and output folders
- ``models``: the ImageNet classifiers (``CLASSIFIERS``, ``load_classifier``)
- ``data``: image loading, ImageNet readers, the offline demo corpus, normal-image selection
- ``ops``: the 38 image processing operations, batched and Pillow-exact
- ``features``: top-5 labels under the operations, counting and differences features
- ``attacks``: the 12 adversarial attacks (``ATTACKS``)
- ``dataset``: building the normal/adversarial dataset and its splits
- ``detect``: the detectors (``DETECTORS``)
- ``correct``: label and image correction
- ``report``: tables and figures
"""

__version__ = "0.1.0"
