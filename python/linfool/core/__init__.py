"""The lowest layer: where things are (paths), how Caffe is found and where it computes (caffe_env),
Caffe's records and prototxt (datum, records, prototxt), whole files and locks (files), one-line
errors (cli), and the run and data-set handles every stage goes through (runs, datasets, results).
Imports nothing from the layers above."""
