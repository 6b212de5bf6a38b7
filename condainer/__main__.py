from condainer.cli.entry import main

main()
