"""Experiment harnesses and diagnostics, apart from the library they measure (they write results
tables and plots; nothing in the core library imports them). Each is a ``usn-keypoints``
subcommand (:mod:`usn_robust_keypoints.cli.experiments`):

- :mod:`.pruning`: ``experiment``, the pruning comparison (USN, USN+W, baselines);
- :mod:`.tradeoff`: ``tradeoff`` (PCK vs certified accuracy) and ``pooled-paired``;
- :mod:`.bench_certify`: ``bench-certify``, every backend/method on the same frames;
- :mod:`.certify_timing`: ``certify-timing``, the certificate's time per frame of several models;
- :mod:`.box_pass_cost`: ``box-pass-cost``, the time of one bound pass per sub-box;
- :mod:`.frontier`: ``frontier``, one plot of the accuracy / certification trade-off;
- :mod:`.stream_check`: ``stream-check``, the synthetic camera stream certified offline;
- :mod:`.real_frontier`: ``real-frontier``, real ``left*`` PCK vs certified rate within budgets;
- :mod:`.own_model_speed`: ``own-model-speed``, the shipped default certified as native / imported copies.
"""
