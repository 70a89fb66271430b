"""``mnist-lit paths``: the optimizers of ``configs/optimizer/`` stepped on 2-D loss surfaces, their paths drawn.

The surfaces (``surfaces``), the optimizer files (``optimizer_files``), the stepping (``walk``), the fair rate
(``rates``), the pictures (``drawing``), the CSVs and summary (``report``) and the command (``command``). The package
uses only ``mnist_lit.errors`` from the project, and only the entry point imports it.
"""
