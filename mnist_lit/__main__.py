"""`python -m mnist_lit`: the same command as `mnist-lit`."""

from mnist_lit.launch import main

main()
