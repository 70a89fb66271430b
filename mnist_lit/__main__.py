from mnist_lit.launch import main

main()
