import CairnCLI

@main
struct CairnMain {
    static func main() async {
        await CairnCommand.main()
    }
}
