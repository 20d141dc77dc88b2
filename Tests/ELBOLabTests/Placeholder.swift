import Testing
@testable import ELBOLab
