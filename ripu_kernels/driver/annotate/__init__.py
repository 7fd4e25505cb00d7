"""People in the loop: export a round's queries in the formats annotation tools import, import what they export.

| module | holds |
| --- | --- |
| ``geometry`` | label resolution <-> original image file (cells of the ground-truth resize), the box convention |
| ``classes`` | names and colours (Cityscapes palette, a fixed palette otherwise), ``background`` and ``query`` |
| ``export`` | :class:`Exporter` (a listener of the acquisition's batch writer), ``regions.json`` |
| ``cvat`` | CVAT for images 1.1 XML: ``query`` boxes out; polygons, boxes, masks back |
| ``cvat_mask`` | CVAT Segmentation mask 1.1: ``labelmap.txt`` + colour PNGs, out and back |
| ``coco`` | COCO 1.0 JSON: RLE ``query`` masks out; polygons and RLE back |
| ``label_studio`` | Label Studio tasks with predictions + labeling config out; its JSON export back |
| ``rle`` | COCO (pycocotools') and CVAT run-length encodings |
| ``raster`` | polygons and boxes onto label maps (pycocotools) |
| ``sources`` | untrusted input: folders and zips (traversal, size, bomb checks), XML without DTDs, PNG headers |
| ``importer`` | ``ripu import-labels``: read, check everything, then write |
| ``human`` | ``active.oracle: human``: a training run that waits for people after each round |
"""
