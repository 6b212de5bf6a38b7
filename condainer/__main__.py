from condainer.cli import main

main()
