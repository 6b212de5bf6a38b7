from condainer.entry import main

main()
