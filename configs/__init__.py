"""Config files for ``launch.py`` (a package so that eval configs share ``configs.pretrain``)."""
