import Testing

@Test func cxlBuilds() {}
