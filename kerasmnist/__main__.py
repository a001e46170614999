from kerasmnist.cli import main

main()
