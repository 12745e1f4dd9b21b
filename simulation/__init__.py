"""The closed-loop simulation: days of drifting data through the real pipeline against baselines
(``python -m simulation``)."""
