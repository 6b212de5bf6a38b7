"""A project and its settings: the directory, condainer.yml (and its virtual_packages vocabulary), and the paths derived from them."""
